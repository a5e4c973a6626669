"""Leave-one-subject-out evaluation of SCViT (Sec. 4.2): one fold per subject with samples.

Each fold trains on every other subject with the fixed schedule and writes the held-out subject's
predictions ``<out>/<subject>.csv`` (clip, label_id, pred_id, p_0..p_{C-1}) atomically, then a record
``<out>/folds/<subject>.json`` carrying the fold's key: a SHA-256 of the scvit settings, the
schedule (execution-only keys excluded), the input data (every file's content) and the subject. A
rerun skips folds whose record holds the current key, so an interrupted run resumes and a changed
parameter redoes every fold. Folds run one after another or in ``workers`` processes (CPU: each with
cores / workers threads; CUDA: worker k on visible GPU k mod n_gpus). The UF1/UAR pooled over all
folds (MEGC2019) go to ``<out>/scores.json`` and the predictions to ``<out>/megc_log.txt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch

from selfme.io import write_csv, write_json
from selfme.metrics import Scores, score, write_megc_log
from selfme.scvit.factory import SCViTConfig
from selfme.scvit.inputs import HORIZONTAL
from selfme.scvit.sources import Samples, build_inputs
from selfme.scvit.train import LosoConfig, deterministic, fold_seed, predict, resolve_device, train_fold
from selfme.scvit.weights import resolve_weights

log = logging.getLogger(__name__)


class Fold(NamedTuple):
    subject: str
    train: np.ndarray   # row indices of the training subjects
    test: np.ndarray    # row indices of the held-out subject


@dataclass(frozen=True)
class LosoResult:
    scores: Scores
    predictions: pd.DataFrame   # db, subject, clip, gt, pred (every fold, in sample order)
    ran: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: float


def loso_folds(subjects: Sequence[str]) -> list[Fold]:
    """One fold per distinct subject (in order of first appearance); test = its rows, train = the rest."""
    subjects = np.asarray([str(s) for s in subjects])
    folds = []
    for subject in dict.fromkeys(subjects):
        test = np.flatnonzero(subjects == subject)
        train = np.flatnonzero(subjects != subject)
        folds.append(Fold(subject, train, test))
    return folds


def weights_identity(model_config: SCViTConfig) -> str | None:
    """SHA-256 of the ImageNet weights file the model starts from (None: random initialisation)."""
    source = resolve_weights(model_config.model_name, pretrained=model_config.pretrained,
                             weights_file=model_config.weights_file)
    path = source.kwargs.get("pretrained_cfg_overlay", {}).get("file")
    if path is None:
        return None if not model_config.pretrained else source.description
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fold_key(model_config: SCViTConfig, config: LosoConfig, *, data_digest: str, subject: str,
             num_classes: int, weights: str | None = None) -> str:
    payload = {"scvit": model_config.as_dict(), "loso": config.result_key(), "data": data_digest,
               "weights": weights, "subject": subject, "num_classes": num_classes}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _record_path(out: Path, subject: str) -> Path:
    return out / "folds" / f"{subject}.json"


def _is_done(out: Path, subject: str, key: str) -> bool:
    record = _record_path(out, subject)
    if not (out / f"{subject}.csv").is_file() or not record.is_file():
        return False
    try:
        return json.loads(record.read_text(encoding="utf-8")).get("key") == key
    except (OSError, ValueError):
        return False


def _remove_stale(out: Path, subjects: set[str]) -> None:
    """Fold files (ours: they have a record) of subjects that are no longer in the data."""
    for record in sorted((out / "folds").glob("*.json")):
        if record.stem not in subjects:
            (out / f"{record.stem}.csv").unlink(missing_ok=True)
            record.unlink()
            shutil.rmtree(out / "live" / record.stem, ignore_errors=True)
            log.info("loso: removed the stale fold %s", record.stem)


def run_fold(x: torch.Tensor, y: torch.Tensor, clips: Sequence[str], fold: Fold, *, out: Path, key: str,
             model_config: SCViTConfig, config: LosoConfig, num_classes: int, device: torch.device,
             negate: tuple[int, ...], progress: bool = False) -> dict[str, Any]:
    """Train on ``fold.train``, predict ``fold.test`` after the last epoch, write CSV then record."""
    if set(fold.train) & set(fold.test):
        raise RuntimeError(f"fold {fold.subject}: a sample is both in training and test")
    start = time.perf_counter()
    seed = fold_seed(config.seed, fold.subject)
    train_idx, test_idx = torch.as_tensor(fold.train), torch.as_tensor(fold.test)
    with deterministic():
        model, history = train_fold(x[train_idx], y[train_idx], model_config=model_config, config=config,
                                    num_classes=num_classes, seed=seed, device=device, negate=negate,
                                    live_dir=out / "live" / fold.subject if config.live else None,
                                    progress=progress)
        probs = predict(model, x[test_idx], device=device)
    frame = pd.DataFrame({"clip": [clips[i] for i in fold.test], "label_id": y[test_idx].numpy(),
                          "pred_id": probs.argmax(axis=1)})
    for c in range(num_classes):
        frame[f"p_{c}"] = np.round(probs[:, c], 6)
    write_csv(out / f"{fold.subject}.csv", frame)
    seconds = time.perf_counter() - start
    record = {"subject": fold.subject, "key": key, "seed": seed, "n_train": len(fold.train),
              "n_test": len(fold.test), "device": str(device), "seconds": round(seconds, 2),
              "final": history[-1], "history": history}
    write_json(_record_path(out, fold.subject), record)
    return record


# ---- parallel workers -------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(counter, inputs_path: str, device: str, threads: int, log_level: int) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    torch.set_num_threads(max(1, threads))
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", index % torch.cuda.device_count())
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    data = torch.load(inputs_path, mmap=True, weights_only=True)
    _WORKER.update(data, device=resolved)


def _worker_fold(fold: Fold, kwargs: dict[str, Any]) -> dict[str, Any]:
    return run_fold(_WORKER["x"], _WORKER["y"], _WORKER["clips"], fold, device=_WORKER["device"], **kwargs)


def run_loso(samples: Samples, *, out: str | os.PathLike, model_config: SCViTConfig, config: LosoConfig,
             num_classes: int, progress: bool = True) -> LosoResult:
    """Every LOSO fold of ``samples`` (completed ones skipped), then the pooled UF1/UAR and MEGC log."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = samples.frame
    labels = np.array(frame["label_id"], dtype=np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels lie outside 0..{num_classes - 1}")
    folds = loso_folds(frame["subject"])
    _remove_stale(out, {f.subject for f in folds})
    digest = samples.digest()
    weights = weights_identity(model_config)  # missing ImageNet weights fail here, before any fold
    keys = {f.subject: fold_key(model_config, config, data_digest=digest, weights=weights, subject=f.subject,
                                num_classes=num_classes) for f in folds}
    todo = [f for f in folds if not _is_done(out, f.subject, keys[f.subject])]
    pending = {f.subject for f in todo}
    skipped = tuple(f.subject for f in folds if f.subject not in pending)
    if skipped:
        log.info("loso: %d fold(s) already done with these parameters and data: %s", len(skipped), ", ".join(skipped))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    if todo:
        x, channels = build_inputs(samples, model_config.input_config())
        y = torch.as_tensor(labels, dtype=torch.long)
        clips = frame["clip"].astype(str).tolist()
        negate = tuple(i for i, c in enumerate(channels) if c in HORIZONTAL)
        kwargs = dict(out=out, model_config=model_config, config=config, num_classes=num_classes, negate=negate)
        log.info("loso: %d of %d fold(s) to train, %d samples, input %s, %d worker(s)", len(todo), len(folds),
                 len(frame), tuple(x.shape[1:]), min(config.workers, len(todo)))
        bar = tqdm(total=len(todo), desc="loso folds", disable=not progress)
        if config.workers == 1 or len(todo) == 1:
            device = resolve_device(config.device)
            threads = torch.get_num_threads()
            if config.threads > 0:
                torch.set_num_threads(config.threads)
            try:
                for fold in todo:
                    _log_fold(run_fold(x, y, clips, fold, key=keys[fold.subject], device=device,
                                       progress=progress, **kwargs))
                    bar.update()
            finally:
                torch.set_num_threads(threads)
        else:
            workers = min(config.workers, len(todo))
            threads = config.threads or max(1, (os.cpu_count() or 1) // workers)
            context = mp.get_context("spawn")
            with tempfile.TemporaryDirectory(prefix="selfme-loso-") as tmp:
                inputs_path = str(Path(tmp) / "inputs.pt")
                torch.save({"x": x, "y": y, "clips": clips}, inputs_path)
                initargs = (context.Value("i", 0), inputs_path, config.device, threads, logging.getLogger().level)
                with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                         initargs=initargs) as pool:
                    futures = [pool.submit(_worker_fold, fold, {**kwargs, "key": keys[fold.subject]}) for fold in todo]
                    for future in as_completed(futures):
                        _log_fold(future.result())
                        bar.update()
        bar.close()
    predictions = collect_predictions(out, samples)
    scores = score(predictions["gt"], predictions["pred"], num_classes)
    write_megc_log(predictions, out / "megc_log.txt")
    write_json(out / "scores.json", {**scores.as_dict(), "n_folds": len(folds), "db": str(frame["db"].iloc[0])})
    return LosoResult(scores, predictions, tuple(f.subject for f in todo), skipped, time.perf_counter() - start)


def _log_fold(record: dict[str, Any]) -> None:
    final = record["final"]
    log.info("fold %s: %d train / %d test, %d epochs, loss %.4f (ce %.4f, sc %.4f), %.1f s on %s",
             record["subject"], record["n_train"], record["n_test"], final["epoch"], final["loss"], final["ce"],
             final["sc"], record["seconds"], record["device"])


def read_fold_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A fold's predictions, checked against the contract (clip, label_id, pred_id, p_0..p_{C-1})."""
    frame = pd.read_csv(path, dtype={"clip": str})
    probs = [c for c in frame.columns if c.startswith("p_")]
    expected = ["clip", "label_id", "pred_id"] + [f"p_{c}" for c in range(len(probs))]
    if list(frame.columns) != expected or not probs:
        raise ValueError(f"{path}: columns {list(frame.columns)} are not {expected}")
    return frame


def collect_predictions(out: str | os.PathLike, samples: Samples) -> pd.DataFrame:
    """Every fold's predictions joined to the samples: db, subject, clip, gt, pred (sample order)."""
    out = Path(out)
    parts = []
    for subject in dict.fromkeys(samples.frame["subject"].astype(str)):
        fold = read_fold_csv(out / f"{subject}.csv")
        parts.append(fold.assign(subject=subject))
    preds = pd.concat(parts, ignore_index=True)
    merged = samples.frame.merge(preds, on=["subject", "clip"], how="left", validate="one_to_one")
    if merged["pred_id"].isna().any():
        raise ValueError(f"{int(merged['pred_id'].isna().sum())} sample(s) have no prediction in {out}")
    if (merged["label_id_x"] != merged["label_id_y"]).any():
        raise ValueError(f"fold CSVs in {out} disagree with the samples' labels")
    return pd.DataFrame({"db": merged["db"], "subject": merged["subject"], "clip": merged["clip"],
                         "gt": merged["label_id_x"].astype(int), "pred": merged["pred_id"].astype(int)})
