"""Leave-one-subject-out evaluation of SCViT (Sec. 4.2): one fold per (dataset, subject), once per seed.

``loso.protocol`` chooses the training pool of a fold: the other subjects of its own dataset
(``per_dataset``, the paper's) or of every dataset of the run (``composite``, MEGC2019's). Each fold
runs once per seed of ``loso.seeds``, trains with the fixed schedule and writes the held-out subject's
predictions ``<out>/<dataset>/seed_<s>/<subject>.csv`` (clip, label_id, pred_id, p_0..p_{C-1})
atomically, then its record (``selfme.scvit.folds`` has the layout and the key). A rerun skips every
(seed, fold) whose record holds the current key, so an interrupted run resumes, a new seed runs only
its own folds and a changed parameter redoes every fold. Runs go one after another or in ``workers``
processes (CPU: each with cores / workers threads; CUDA: worker k on visible GPU k mod n_gpus). Then,
per dataset, each seed's MEGC2019 log and ``scores.json``: UF1/UAR pooled over the folds per seed
(MEGC2019), mean and sample std over the seeds, and ``excluded.csv`` listing the dataset's samples the
source left out (``selfme.scvit.screening``; absent when none; written by ``selfme.scvit.results``).
Parallel workers read the inputs from ``<out>/<dataset>/.work/`` (``<out>/.work/`` for several datasets),
removed when the runs end and at the start of the next run (after a kill). Run times and the device are
not written into the results (the same parameters give byte-identical results): they are logged and
returned (``LosoResult.timings``; ``selfme.scvit.results.timing_report`` for a timing file outside them).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch

from selfme.io import write_csv
from selfme.metrics.aggregate import seed_scores, summarise
from selfme.scvit.factory import SCViTConfig
from selfme.scvit.folds import (Fold, clean_dataset_dir, collect_predictions, fold_key, is_done, loso_folds,
                                run_seed, run_threads, seed_dir, weights_identity, write_fold_record)
from selfme.scvit.inputs import HORIZONTAL, hflip
from selfme.scvit.results import LosoResult, write_dataset_results
from selfme.scvit.sources import Samples, build_inputs
from selfme.device import resolve_device
from selfme.scvit.stacked import ensemble_of
from selfme.scvit.train import LosoConfig, deterministic, member_seed, predict, train_fold

log = logging.getLogger(__name__)


class FoldRun(NamedTuple):
    """One run: a fold with one seed of ``loso.seeds``, and the key its record must hold."""
    seed: int
    fold: Fold
    key: str

    @property
    def label(self) -> tuple[int, str, str]:
        return (self.seed, self.fold.dataset, self.fold.subject)


def run_fold(data: Mapping[str, Any], run: FoldRun, *, out: Path, model_config: SCViTConfig, config: LosoConfig,
             num_classes: int, device: torch.device, negate: tuple[int, ...], progress: bool = False) -> dict[str, Any]:
    """Train on ``fold.train``, predict ``fold.test`` after the last epoch, write CSV then record; returns
    the record plus the run's ``device`` and ``seconds`` (logged, never written into the results).

    ``data``: x [N, C, S, S], y [N], clips and ids (``dataset/subject`` of every row)."""
    fold = run.fold
    check_fold(data, run)
    start = time.perf_counter()
    folder = seed_dir(out, fold.dataset, run.seed)
    x, y = data["x"], data["y"]
    train_idx = torch.as_tensor(fold.train)
    with deterministic():
        members = [train_fold(x[train_idx], y[train_idx], model_config=model_config, config=config,
                              num_classes=num_classes, seed=run_seed(member_seed(run.seed, k, config.ensemble), fold),
                              device=device, negate=negate, progress=progress,
                              live_dir=folder / "live" / fold.subject if config.live and k == 0 else None)
                   for k in range(config.ensemble)]  # loso.ensemble: K seeds, mean softmax
        model, history = ensemble_of(members)
    return finish_fold(data, run, model, history, out=out, config=config, num_classes=num_classes, device=device,
                       negate=negate, seconds=time.perf_counter() - start)


def check_fold(data: Mapping[str, Any], run: FoldRun) -> None:
    """The held-out subject's rows are the test rows and none of them, nor the subject, is in training."""
    fold, ids = run.fold, data["ids"]
    train_subjects = {ids[i] for i in fold.train}
    if set(fold.train) & set(fold.test) or fold.name in train_subjects or {ids[i] for i in fold.test} != {fold.name}:
        raise RuntimeError(f"fold {fold.name}: the held-out subject is also in the training set")


def finish_fold(data: Mapping[str, Any], run: FoldRun, model: torch.nn.Module, history: list[dict[str, float]], *,
                out: Path, config: LosoConfig, num_classes: int, device: torch.device, negate: tuple[int, ...],
                seconds: float) -> dict[str, Any]:
    """Predict the held-out subject with the trained model (and its mirror, ``negate`` the channels a mirror
    negates, under ``loso.tta_hflip``), write its CSV then its record; returns the record plus ``device`` and
    ``seconds`` (training seconds given, prediction added)."""
    start = time.perf_counter()
    fold, ids = run.fold, data["ids"]
    train_subjects = sorted({ids[i] for i in fold.train})
    seed = run_seed(run.seed, fold)
    folder = seed_dir(out, fold.dataset, run.seed)
    y = data["y"]
    test_idx = torch.as_tensor(fold.test)
    x_test = data["x"][test_idx]
    with deterministic():
        probs = predict(model, x_test, device=device)
        if config.tta_hflip:  # and their mirrors: (p(x) + p(mirror x)) / 2
            probs = (probs + predict(model, hflip(x_test, negate), device=device)) / 2
    frame = pd.DataFrame({"clip": [data["clips"][i] for i in fold.test], "label_id": y[test_idx].numpy(),
                          "pred_id": probs.argmax(axis=1)})
    for c in range(num_classes):
        frame[f"p_{c}"] = np.round(probs[:, c], 6)
    write_csv(folder / f"{fold.subject}.csv", frame)
    seconds += time.perf_counter() - start
    record = {"dataset": fold.dataset, "subject": fold.subject, "protocol": config.protocol,
              "base_seed": run.seed, "seed": seed, "n_train": len(fold.train), "n_test": len(fold.test),
              "train_subjects": train_subjects, "final": history[-1], "history": history}
    record = write_fold_record(folder, fold.subject, record, key=run.key)
    return {**record, "device": str(device), "seconds": round(seconds, 2)}


# ---- parallel workers -------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(counter, inputs_path: str, device: str, threads: int, log_level: int) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    torch.set_num_threads(max(1, threads))
    resolved = resolve_device(device, key="loso.device")
    resolved = worker_device(index, resolved, torch.cuda.device_count() if resolved.type == "cuda" else 0)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    data = torch.load(inputs_path, mmap=True, weights_only=True)
    _WORKER.update(data, device=resolved)


def worker_device(index: int, device: torch.device, n_gpus: int) -> torch.device:
    """Worker ``index``'s device: plain ``cuda`` puts worker k on visible GPU k mod n_gpus, so with more
    workers than GPUs several folds train at once on each GPU (6 workers, 1 GPU: six folds on cuda:0);
    ``cuda:N`` puts every worker on GPU N; ``cpu`` stays."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", index % max(1, n_gpus))
    return device


def _worker_fold(run: FoldRun, kwargs: dict[str, Any]) -> dict[str, Any]:
    return run_fold(_WORKER, run, device=_WORKER["device"], **kwargs)


def work_dir(out: Path, datasets: Sequence[str]) -> Path:
    """The scratch folder of a run, inside its output: ``<out>/<dataset>/.work`` for one dataset (a
    pipeline stage's own output folder), ``<out>/.work`` for several."""
    return (out / datasets[0] if len(datasets) == 1 else out) / ".work"


def _train(runs: Sequence[FoldRun], data: dict[str, Any], *, config: LosoConfig, progress: bool, work: Path,
           **kwargs: Any) -> list[dict[str, Any]]:
    """Every run, in this process or in ``config.workers`` spawned ones (which read the inputs from
    ``work``, removed afterwards); returns what ``run_fold`` returned, in the order of ``runs``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), desc="loso folds", disable=not progress)
    done: dict[tuple[int, str, str], dict[str, Any]] = {}
    if config.workers == 1 or len(runs) == 1:
        device = resolve_device(config.device, key="loso.device")
        threads = torch.get_num_threads()
        torch.set_num_threads(run_threads(config))  # the count the runs' keys hold
        try:
            if config.stack_folds > 1:  # several folds as one stacked model (selfme.scvit.stacked)
                from selfme.scvit.stacked import run_folds_stacked

                for run, record in run_folds_stacked(data, runs, config=config, device=device, **kwargs):
                    done[run.label] = _log_fold(record)
                    bar.update()
            for run in (r for r in runs if r.label not in done):
                done[run.label] = _log_fold(run_fold(data, run, config=config, device=device, progress=progress,
                                                     **kwargs))
                bar.update()
        finally:
            torch.set_num_threads(threads)
    else:
        workers = min(config.workers, len(runs))
        threads = run_threads(config)  # the count the runs' keys hold
        context = mp.get_context("spawn")
        work.mkdir(parents=True, exist_ok=True)
        inputs_path = work / "inputs.pt"
        try:
            torch.save(data, inputs_path)
            initargs = (context.Value("i", 0), str(inputs_path), config.device, threads, logging.getLogger().level)
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                     initargs=initargs) as pool:
                futures = {pool.submit(_worker_fold, run, {**kwargs, "config": config}): run for run in runs}
                for future in as_completed(futures):
                    done[futures[future].label] = _log_fold(future.result())
                    bar.update()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    bar.close()
    return [done[run.label] for run in runs]


def plan_runs(samples: Samples, *, out: Path, model_config: SCViTConfig, config: LosoConfig, num_classes: int,
              datasets: Sequence[str]) -> list[tuple[FoldRun, bool]]:
    """Every (seed, fold) of ``datasets`` with its key, and whether it is done already (seed-major).

    Also clears each dataset folder of seeds no longer asked for and subjects no longer in the data."""
    frame = samples.frame
    folds = [f for f in loso_folds(frame["subject"], frame["dataset"], protocol=config.protocol)
             if f.dataset in datasets]
    lonely = next((f for f in folds if len(f.train) == 0), None)
    if lonely is not None:
        pool = f"dataset {lonely.dataset}" if config.protocol == "per_dataset" else "the pooled datasets"
        raise ValueError(f"LOSO fold {lonely.name} has no training subject: the samples of {pool} hold only "
                         f"subject {lonely.subject}; leave-one-subject-out needs at least two subjects")
    for dataset in datasets:
        clean_dataset_dir(out / dataset, config.seeds, {f.subject for f in folds if f.dataset == dataset})
    if config.protocol == "composite":
        digests = dict.fromkeys(datasets, samples.digest())
    else:
        digests = {d: samples.subset([d]).digest() for d in datasets}
    weights = weights_identity(model_config)  # missing ImageNet weights fail here, before any fold
    runs = []
    for seed in config.seeds:
        for fold in folds:
            key = fold_key(model_config, config, data_digest=digests[fold.dataset], fold=fold, seed=seed,
                           num_classes=num_classes, weights=weights)
            runs.append((FoldRun(seed, fold, key), is_done(seed_dir(out, fold.dataset, seed), fold.subject, key)))
    return runs


def run_loso(samples: Samples, *, out: str | os.PathLike, model_config: SCViTConfig, config: LosoConfig,
             num_classes: int, datasets: Sequence[str] | None = None, progress: bool = True) -> LosoResult:
    """Every (seed, fold) of ``samples`` whose held-out subject belongs to ``datasets`` (default all),
    completed runs skipped, then per dataset the MEGC2019 logs and scores.json; returns the summary
    (summary.json's schema) of the datasets run, with ``composite`` when there are several.

    ``samples`` is the training pool: with ``protocol: composite`` every sample trains every fold that
    does not hold it out, so a pipeline stage passes every dataset's samples and its own dataset."""
    start = time.perf_counter()
    out = Path(out)
    frame = samples.frame
    labels = np.array(frame["label_id"], dtype=np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels lie outside 0..{num_classes - 1}")
    datasets = list(samples.datasets if datasets is None else datasets)
    unknown = sorted(set(datasets) - set(samples.datasets))
    if unknown:
        raise ValueError(f"no samples of dataset(s) {unknown}; the samples hold {samples.datasets}")
    runs = plan_runs(samples, out=out, model_config=model_config, config=config, num_classes=num_classes,
                     datasets=datasets)
    work = work_dir(out, datasets)
    shutil.rmtree(work, ignore_errors=True)  # what a killed run left behind
    todo = [run for run, done in runs if not done]
    skipped = tuple(run.label for run, done in runs if done)
    if skipped:
        log.info("loso: %d of %d run(s) already done with these parameters and data", len(skipped), len(runs))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    outcomes = []
    if todo:
        x, channels = build_inputs(samples, model_config.input_config())
        data = {"x": x, "y": torch.as_tensor(labels, dtype=torch.long), "clips": frame["clip"].astype(str).tolist(),
                "ids": (frame["dataset"].astype(str) + "/" + frame["subject"].astype(str)).tolist()}
        log.info("loso (%s): %d of %d run(s) to train (%d seed(s)), %d samples, input %s, %d worker(s)",
                 config.protocol, len(todo), len(runs), len(config.seeds), len(frame), tuple(x.shape[1:]),
                 min(config.workers, len(todo)))
        outcomes = _train(todo, data, config=config, progress=progress, work=work, out=out,
                          model_config=model_config, num_classes=num_classes,
                          negate=tuple(i for i, c in enumerate(channels) if c in HORIZONTAL))
    predictions = collect_predictions(out, samples, seeds=config.seeds, datasets=datasets)
    per_seed = seed_scores(predictions, num_classes)
    summary = summarise(per_seed)
    for dataset in datasets:
        write_dataset_results(out, dataset, predictions=predictions, per_seed=per_seed, summary=summary,
                       excluded=samples.excluded, protocol=config.protocol)
    timings = tuple({k: o[k] for k in ("base_seed", "dataset", "subject", "seconds", "device")} for o in outcomes)
    return LosoResult(summary, per_seed, predictions, tuple(run.label for run in todo), skipped,
                      time.perf_counter() - start, timings, samples.excluded,
                      {k: getattr(config, k) for k in config.EXECUTION_KEYS})


def _log_fold(outcome: dict[str, Any]) -> dict[str, Any]:
    final = outcome["final"]
    log.info("fold %s/%s seed %d: %d train / %d test, %d epochs, loss %.4f (ce %.4f, sc %.4f), %.1f s on %s",
             outcome["dataset"], outcome["subject"], outcome["base_seed"], outcome["n_train"], outcome["n_test"],
             final["epoch"], final["loss"], final["ce"], final["sc"], outcome["seconds"], outcome["device"])
    return outcome
