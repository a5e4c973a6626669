"""What a LOSO run (``selfme.scvit.loso.run_loso``) returns (:class:`LosoResult`), the files it leaves per
dataset (each seed's MEGC2019 log, ``scores.json``, ``excluded.csv``) and its timing report, which never
goes into those results."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch

from selfme.io import write_csv, write_json
from selfme.metrics import write_megc_log
from selfme.scvit.folds import seed_dir
from selfme.scvit.screening import no_exclusions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LosoResult:
    summary: dict[str, dict[str, Any]]   # summary.json's schema: per dataset, average, composite (several)
    per_seed: pd.DataFrame               # scope, seed, uf1, uar, n_samples, n_folds
    predictions: pd.DataFrame            # seed, dataset, db, subject, clip, gt, pred
    ran: tuple[tuple[int, str, str], ...]       # (seed, dataset, subject) trained now
    skipped: tuple[tuple[int, str, str], ...]   # (seed, dataset, subject) already done
    seconds: float
    timings: tuple[dict[str, Any], ...] = ()     # per run trained now: seed, dataset, subject, seconds, device
    excluded: pd.DataFrame = field(default_factory=no_exclusions)  # samples the source left out
    execution: dict[str, Any] = field(default_factory=dict)        # loso's execution-only keys of the call


def write_dataset_results(out: Path, dataset: str, *, predictions: pd.DataFrame, per_seed: pd.DataFrame,
                          summary: Mapping[str, Any], excluded: pd.DataFrame, protocol: str) -> None:
    """A dataset's MEGC2019 log per seed, scores.json, and excluded.csv (only when it excluded samples)."""
    own = predictions[predictions["dataset"] == dataset]
    for seed, group in own.groupby("seed", sort=False):
        write_megc_log(group, seed_dir(out, dataset, seed) / "megc_log.txt")
    left_out = excluded[excluded["dataset"].astype(str) == dataset]
    seeds = per_seed[per_seed["scope"] == dataset]
    write_json(out / dataset / "scores.json", {
        **summary[dataset], "db": str(own["db"].iloc[0]), "protocol": protocol, "n_excluded": len(left_out),
        "per_seed": {str(s): {"uf1": round(u, 6), "uar": round(r, 6)}
                     for s, u, r in zip(seeds["seed"], seeds["uf1"], seeds["uar"])}})
    if len(left_out):
        write_csv(out / dataset / "excluded.csv", left_out)
        log.warning("loso: %d sample(s) of %s excluded, listed in %s", len(left_out), dataset,
                    out / dataset / "excluded.csv")
    else:
        (out / dataset / "excluded.csv").unlink(missing_ok=True)


def timing_report(result: LosoResult) -> dict[str, Any]:
    """Run times and host facts of a LOSO call, for a timing file outside the results (they differ
    between identical runs, so they never go into the results or the metrics)."""
    return {"seconds": round(result.seconds, 2), "ran": len(result.ran), "skipped": len(result.skipped),
            "loso": result.execution,
            "host": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                     "torch_threads": torch.get_num_threads(),
                     "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
            "runs": list(result.timings)}
