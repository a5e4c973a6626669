"""Aggregation of LOSO fold predictions into the pipeline's metrics (the aggregate stage).

Each dataset's folds are ``results/<dataset>/seed_<s>/<subject>.csv`` (clip, label_id, pred_id,
p_0..p_{C-1}), one folder per seed of ``loso.seeds``. For every seed, TP, FP and FN are pooled over all
folds (MEGC2019) before UF1 and UAR are computed (Eq. 17-18): per dataset, for ``average`` (the mean
of the datasets, Table 2's last column) and, with several datasets, for ``composite`` (every sample
of every dataset pooled, as MEGC2019 scores its composite evaluation; a composite-protocol run's
per-dataset figures are slices of it). The reported value is the mean over the seeds and ``*_std``
the SAMPLE standard deviation over the seeds (ddof = 1: the spread one more seed would show), null
with a single seed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from selfme.io import atomic_path, write_csv, write_json
from selfme.metrics.logs import MEGC_DB, write_megc_log
from selfme.metrics.scores import score

log = logging.getLogger(__name__)
FOLD_COLUMNS = ("clip", "label_id", "pred_id")
SEED_DIR = re.compile(r"seed_(\d+)")


def read_folds(folder: str | Path) -> pd.DataFrame:
    """All fold CSVs of one dataset as rows (subject, clip, gt, pred); the subject is the file stem."""
    folder = Path(folder)
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no fold predictions (<subject>.csv) in {folder}: run the loso stage")
    parts = []
    for path in files:
        fold = pd.read_csv(path, dtype={"clip": str})
        missing = [c for c in FOLD_COLUMNS if c not in fold.columns]
        if missing:
            raise ValueError(f"{path} is not a fold prediction file: columns {missing} are missing")
        parts.append(pd.DataFrame({"subject": path.stem, "clip": fold["clip"],
                                   "gt": fold["label_id"].astype(int), "pred": fold["pred_id"].astype(int)}))
    return pd.concat(parts, ignore_index=True)


def seed_folders(folder: str | Path) -> list[int]:
    """The seeds with a ``seed_<s>/`` folder in a dataset's results folder, ascending."""
    found = [int(m.group(1)) for p in Path(folder).glob("seed_*") if (m := SEED_DIR.fullmatch(p.name)) and p.is_dir()]
    return sorted(found)


def read_seeds(folder: str | Path, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """Rows (seed, subject, clip, gt, pred) of every seed folder of one dataset (``seeds`` None: all)."""
    folder = Path(folder)
    seeds = list(seeds) if seeds is not None else seed_folders(folder)
    if not seeds:
        raise FileNotFoundError(f"no fold predictions (seed_<s>/<subject>.csv) in {folder}: run the loso stage")
    return pd.concat([read_folds(folder / f"seed_{int(s)}").assign(seed=int(s)) for s in seeds], ignore_index=True)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else None)


def mean_pm_std(mean: float | None, std: float | None, digits: int = 4) -> str:
    """``0.5615 ± 0.0123`` (the mean alone where there is no std: a single seed)."""
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return ""
    if std is None or (isinstance(std, float) and np.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def seed_scores(rows: pd.DataFrame, n_classes: int, *, average: Sequence[str] | None = None) -> pd.DataFrame:
    """UF1/UAR per (scope, seed): each dataset's slice, ``average`` of the datasets named (default all)
    and, with several datasets, ``composite``. ``rows``: seed, dataset, subject, gt, pred."""
    datasets = list(dict.fromkeys(rows["dataset"].astype(str)))
    average = list(average or datasets)
    unknown = sorted(set(average) - set(datasets))
    if unknown:
        raise ValueError(f"aggregate.average names datasets that are not run: {unknown}")
    seeds = sorted(set(rows["seed"].astype(int)))
    have = {d: sorted(set(rows.loc[rows["dataset"] == d, "seed"].astype(int))) for d in datasets}
    if any(s != seeds for s in have.values()):
        raise ValueError(f"the datasets were run with different seeds: {have}")
    out = []
    for seed in seeds:
        at_seed = rows[rows["seed"] == seed]
        per = {}
        for dataset in datasets:
            group = at_seed[at_seed["dataset"] == dataset]
            per[dataset] = score(group["gt"], group["pred"], n_classes)
            out.append({"scope": dataset, "seed": seed, "uf1": per[dataset].uf1, "uar": per[dataset].uar,
                        "n_samples": per[dataset].n, "n_folds": int(group["subject"].nunique())})
        out.append({"scope": "average", "seed": seed, "uf1": float(np.mean([per[d].uf1 for d in average])),
                    "uar": float(np.mean([per[d].uar for d in average])), "n_samples": None, "n_folds": None})
        if len(datasets) > 1:
            s = score(at_seed["gt"], at_seed["pred"], n_classes)
            out.append({"scope": "composite", "seed": seed, "uf1": s.uf1, "uar": s.uar, "n_samples": s.n,
                        "n_folds": int(len(at_seed[["dataset", "subject"]].drop_duplicates()))})
    return pd.DataFrame(out)


def summarise(per_seed: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """summary.json from ``seed_scores``: per scope {uf1, uar, uf1_std, uar_std, n_seeds} (means and
    sample stds over the seeds, 4 decimals) plus n_samples and n_folds where the scope has them."""
    summary: dict[str, dict[str, Any]] = {}
    for scope, group in per_seed.groupby("scope", sort=False):
        entry: dict[str, Any] = {}
        for metric in ("uf1", "uar"):
            mean, std = mean_std(group[metric])
            entry[metric] = round(mean, 4)
            entry[f"{metric}_std"] = None if std is None else round(std, 4)
        entry["n_seeds"] = int(len(group))
        for count in ("n_samples", "n_folds"):
            values = set(group[count].dropna().astype(int))
            if len(values) > 1:
                raise ValueError(f"{scope}: the seeds disagree on {count} {sorted(values)}")
            if values:
                entry[count] = values.pop()
        summary[str(scope)] = entry
    return summary


def per_subject_scores(rows: pd.DataFrame, n_classes: int) -> pd.DataFrame:
    """UF1/UAR within each fold and seed (classes absent from the fold are left out; see scores.score)."""
    out = []
    rows = rows if "seed" in rows.columns else rows.assign(seed=0)
    for (seed, subject), group in rows.groupby(["seed", "subject"], sort=True):
        s = score(group["gt"], group["pred"], n_classes)
        out.append({"seed": int(seed), "subject": subject, "n": s.n,
                    "accuracy": float((group["gt"] == group["pred"]).mean()), "uf1": s.uf1, "uar": s.uar})
    return pd.DataFrame(out)


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], title: str, path: str | Path) -> None:
    """A PNG of the confusion matrix (rows: ground truth, columns: prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=120)
    ax.imshow(confusion, cmap="Blues")
    for (i, j), v in np.ndenumerate(confusion):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > confusion.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=30)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def aggregate(results_dir: str | Path, datasets: Sequence[str], class_names: Sequence[str], *,
              metrics_dir: str | Path = "metrics", average: Sequence[str] | None = None,
              seeds: Sequence[int] | None = None) -> dict:
    """Write metrics/summary.json, per-seed scores, MEGC logs, per-subject scores and confusion plots;
    return the summary (see ``summarise``; ``seeds`` None: every seed folder found).

    Side outputs: ``per_seed.csv`` (scope, seed, uf1, uar, n_samples, n_folds), ``logs/seed_<s>/<dataset>.txt``
    (MEGC2019 logs, one per seed), ``per_subject/<dataset>.csv`` (per seed and subject), and the
    confusion CSV / PNG of each dataset for the FIRST seed.
    """
    results_dir, metrics_dir = Path(results_dir), Path(metrics_dir)
    n_classes = len(class_names)
    rows = pd.concat([read_seeds(results_dir / d, seeds).assign(dataset=d) for d in datasets], ignore_index=True)
    per_seed = seed_scores(rows, n_classes, average=average)
    summary = summarise(per_seed)
    first = int(rows["seed"].min()) if seeds is None else int(list(seeds)[0])
    names = np.asarray(class_names)
    for dataset in datasets:
        own = rows[rows["dataset"] == dataset]
        s = summary[dataset]
        log.info("%s: UF1 %.4f +- %s UAR %.4f +- %s over %d samples, %d folds, %d seed(s)", dataset, s["uf1"],
                 s["uf1_std"], s["uar"], s["uar_std"], s["n_samples"], s["n_folds"], s["n_seeds"])
        for seed, group in own.groupby("seed", sort=True):
            write_megc_log(group.assign(db=MEGC_DB.get(dataset, dataset)),
                           metrics_dir / "logs" / f"seed_{int(seed)}" / f"{dataset}.txt")
        write_csv(metrics_dir / "per_subject" / f"{dataset}.csv", per_subject_scores(own, n_classes))
        head = own[own["seed"] == first]
        write_csv(metrics_dir / "confusion" / f"{dataset}.csv",
                  pd.DataFrame({"actual": names[head["gt"]], "predicted": names[head["pred"]]}))
        fs = score(head["gt"], head["pred"], n_classes)
        plot_confusion(fs.confusion, class_names, f"{dataset} (seed {first}): UF1 {fs.uf1:.3f}  UAR {fs.uar:.3f}",
                       metrics_dir / "plots" / "confusion" / f"{dataset}.png")
    write_csv(metrics_dir / "per_seed.csv", per_seed.assign(uf1=per_seed["uf1"].round(6), uar=per_seed["uar"].round(6)))
    write_json(metrics_dir / "summary.json", summary)
    return summary
