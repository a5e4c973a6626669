"""LOSO folds, their keys and their files: the layout ``run_loso`` writes and the aggregate stage reads.

A fold is one held-out (dataset, subject): subjects of different datasets are different people even
where their ids collide (CASME II ``sub01`` is not SMIC's ``sub01``). Two protocols:

* ``per_dataset`` (the SelfME paper): a fold trains on the other subjects of its own dataset;
* ``composite`` (MEGC2019, STSTNet, HTNet): a fold trains on every other (dataset, subject) of the
  pooled datasets; the per-dataset figures are slices of this one run.

Each fold runs once per seed of ``loso.seeds``. Files, for dataset D and seed S under the output root::

    <out>/D/seed_S/<subject>.csv          clip, label_id, pred_id, p_0..p_{C-1} (the fold contract)
    <out>/D/seed_S/folds/<subject>.json   the run's record: key, seed, training subjects, losses
    <out>/D/seed_S/live/<subject>/        dvclive curves (loso.live)
    <out>/D/seed_S/megc_log.txt           MEGC2019 log of the seed's predictions of D
    <out>/D/scores.json                   D's UF1 / UAR, mean and std over the seeds, and per seed
    <out>/D/excluded.csv                  D's samples the source left out, with the reason (when any)

A run is done when its CSV exists and its record holds the current key (``selfme.cache``): the scvit
settings, the schedule (execution-only keys and the seed list excluded), the torch thread count the run
trains with (float sums depend on it), the run's seed, the (dataset, subject), the training pool's data
(every file's content), the ImageNet weights and the code digest of the LOSO modules (the import
closure of ``selfme.scvit.loso``: training, inputs and scoring), so editing that code redoes the runs.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch

from selfme.cache import code_digest, item_key, read_record, write_record
from selfme.io import file_sha256
from selfme.scvit.factory import SCViTConfig
from selfme.scvit.sources import Samples
from selfme.scvit.train import PROTOCOLS, LosoConfig, fold_seed
from selfme.scvit.weights import resolve_weights

log = logging.getLogger(__name__)
SEED_DIR = re.compile(r"seed_(\d+)")
#: The module whose import closure computes a fold run (its code digest keys every run).
LOSO_MODULE = "selfme.scvit.loso"


class Fold(NamedTuple):
    subject: str
    train: np.ndarray   # row indices of the training subjects
    test: np.ndarray    # row indices of the held-out subject
    dataset: str = ""

    @property
    def name(self) -> str:
        """``dataset/subject``: the fold's identity (and what its seed derives from)."""
        return f"{self.dataset}/{self.subject}"


def loso_folds(subjects: Sequence[str], datasets: Sequence[str] | None = None, *,
               protocol: str = "per_dataset") -> list[Fold]:
    """One fold per distinct (dataset, subject), in order of first appearance; test = its rows, train =
    the other subjects of its dataset (per_dataset) or of every dataset (composite)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"LOSO protocol must be one of {PROTOCOLS}, got {protocol!r}")
    subjects = np.asarray([str(s) for s in subjects])
    datasets = np.asarray([""] * len(subjects) if datasets is None else [str(d) for d in datasets])
    if len(datasets) != len(subjects):
        raise ValueError(f"{len(subjects)} subjects but {len(datasets)} dataset names")
    folds = []
    for dataset, subject in dict.fromkeys(zip(datasets.tolist(), subjects.tolist())):
        held_out = (datasets == dataset) & (subjects == subject)
        pool = np.ones(len(subjects), bool) if protocol == "composite" else datasets == dataset
        folds.append(Fold(subject, np.flatnonzero(pool & ~held_out), np.flatnonzero(held_out), dataset))
    return folds


def run_seed(seed: int, fold: Fold) -> int:
    """The seed of one run of a fold: from the base seed and the fold's (dataset, subject)."""
    return fold_seed(seed, fold.name)


def seed_dir(out: str | os.PathLike, dataset: str, seed: int) -> Path:
    return Path(out) / dataset / f"seed_{int(seed)}"


def weights_identity(model_config: SCViTConfig) -> str | None:
    """SHA-256 of the ImageNet weights file the model starts from (None: random initialisation)."""
    source = resolve_weights(model_config.model_name, pretrained=model_config.pretrained,
                             weights_file=model_config.weights_file)
    path = source.kwargs.get("pretrained_cfg_overlay", {}).get("file")
    if path is None:
        return None if not model_config.pretrained else source.description
    return file_sha256(path)


def run_threads(config: LosoConfig) -> int:
    """The torch threads a fold trains with: ``loso.threads``, or when 0 the process's count (one
    worker) or cores / workers (several)."""
    if config.threads > 0:
        return int(config.threads)
    if config.workers == 1:
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) // config.workers)


def fold_key(model_config: SCViTConfig, config: LosoConfig, *, data_digest: str, fold: Fold, seed: int,
             num_classes: int, weights: str | None = None) -> str:
    """The key of one (seed, fold) run; ``data_digest`` is the digest of the fold's training pool."""
    params = {"scvit": model_config.as_dict(), "loso": config.result_key(), "threads": run_threads(config),
              "seed": int(seed), "dataset": fold.dataset, "subject": fold.subject, "num_classes": num_classes}
    return item_key(params=params, inputs={"data": data_digest, "weights": weights},
                    code=code_digest(LOSO_MODULE))


def record_path(folder: Path, subject: str) -> Path:
    return folder / "folds" / f"{subject}.json"


def is_done(folder: Path, subject: str, key: str) -> bool:
    """The run's CSV exists and its record holds ``key``."""
    return (folder / f"{subject}.csv").is_file() and read_record(record_path(folder, subject), key) is not None


def write_fold_record(folder: Path, subject: str, record: dict, *, key: str) -> dict:
    """Write a run's record (after its CSV: the record is what marks the run done); return it."""
    return write_record(record_path(folder, subject), record, key=key)


def remove_stale(folder: Path, subjects: set[str]) -> None:
    """Fold files (ours: they have a record) in ``folder`` of subjects not in ``subjects``."""
    for record in sorted((folder / "folds").glob("*.json")):
        if record.stem not in subjects:
            (folder / f"{record.stem}.csv").unlink(missing_ok=True)
            record.unlink()
            shutil.rmtree(folder / "live" / record.stem, ignore_errors=True)
            log.info("loso: removed the stale fold %s/%s", folder.name, record.stem)


def clean_dataset_dir(folder: Path, seeds: Sequence[int], subjects: set[str]) -> None:
    """Seed folders not in ``seeds``, stale subjects in the others, and fold files of the layout before
    seeds (``<dataset>/<subject>.csv``) leave ``folder``; files without a fold record are kept."""
    remove_stale(folder, set())  # the single-seed layout: <dataset>/<subject>.csv, folds/, live/, megc_log.txt
    for empty in (folder / "live", folder / "folds"):
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()
    (folder / "megc_log.txt").unlink(missing_ok=True)
    for path in sorted(folder.glob("seed_*")):
        match = SEED_DIR.fullmatch(path.name)
        if not match or not path.is_dir():
            continue
        if int(match.group(1)) in seeds:
            remove_stale(path, subjects)
        elif (path / "folds").is_dir():
            shutil.rmtree(path)
            log.info("loso: removed %s (its seed is no longer in loso.seeds)", path)


def read_fold_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A fold's predictions, checked against the contract (clip, label_id, pred_id, p_0..p_{C-1})."""
    frame = pd.read_csv(path, dtype={"clip": str})
    probs = [c for c in frame.columns if c.startswith("p_")]
    expected = ["clip", "label_id", "pred_id"] + [f"p_{c}" for c in range(len(probs))]
    if list(frame.columns) != expected or not probs:
        raise ValueError(f"{path}: columns {list(frame.columns)} are not {expected}")
    return frame


def collect_predictions(out: str | os.PathLike, samples: Samples, *, seeds: Sequence[int],
                        datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """Every run's predictions joined to the samples: seed, dataset, db, subject, clip, gt, pred (seed
    by seed, samples in their order), for ``datasets`` (default all of ``samples``)."""
    chosen = samples.subset(datasets) if datasets is not None else samples
    frame = chosen.frame
    parts = []
    for seed in seeds:
        preds = []
        for dataset, subject in dict.fromkeys(zip(frame["dataset"].astype(str), frame["subject"].astype(str))):
            fold = read_fold_csv(seed_dir(out, dataset, seed) / f"{subject}.csv")
            preds.append(fold.assign(dataset=dataset, subject=subject))
        merged = frame.merge(pd.concat(preds, ignore_index=True), on=["dataset", "subject", "clip"], how="left",
                             validate="one_to_one")
        if merged["pred_id"].isna().any():
            missing = int(merged["pred_id"].isna().sum())
            raise ValueError(f"seed {seed}: {missing} sample(s) have no prediction in {out}")
        if (merged["label_id_x"] != merged["label_id_y"]).any():
            raise ValueError(f"seed {seed}: fold CSVs in {out} disagree with the samples' labels")
        parts.append(pd.DataFrame({"seed": int(seed), "dataset": merged["dataset"], "db": merged["db"],
                                   "subject": merged["subject"], "clip": merged["clip"],
                                   "gt": merged["label_id_x"].astype(int), "pred": merged["pred_id"].astype(int)}))
    return pd.concat(parts, ignore_index=True)
