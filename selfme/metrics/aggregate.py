"""Aggregation of LOSO fold predictions into the pipeline's metrics (the aggregate stage).

Each dataset's folds are ``results/<dataset>/<subject>.csv`` (clip, label_id, pred_id, p_0..p_{C-1});
TP, FP and FN are pooled over all folds (MEGC2019) before UF1 and UAR are computed (Eq. 17-18).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from selfme.io import atomic_path, write_csv, write_json
from selfme.metrics.logs import MEGC_DB, write_megc_log
from selfme.metrics.scores import score

log = logging.getLogger(__name__)
FOLD_COLUMNS = ("clip", "label_id", "pred_id")


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


def per_subject_scores(rows: pd.DataFrame, n_classes: int) -> pd.DataFrame:
    """UF1/UAR within each fold (classes absent from the fold are left out; see scores.score)."""
    out = []
    for subject, group in rows.groupby("subject", sort=True):
        s = score(group["gt"], group["pred"], n_classes)
        out.append({"subject": subject, "n": s.n, "accuracy": float((group["gt"] == group["pred"]).mean()),
                    "uf1": s.uf1, "uar": s.uar})
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
              metrics_dir: str | Path = "metrics", average: Sequence[str] | None = None) -> dict:
    """Write metrics/summary.json, MEGC logs, per-subject scores and confusion plots; return the summary.

    summary.json holds per dataset {uf1, uar, n_samples, n_folds}, ``average`` (the mean UF1 and UAR
    of the datasets named in ``average``, default all: the last column of the paper's Table 2) and,
    with several datasets, ``composite`` (all samples pooled, as MEGC2019's composite evaluation).
    """
    average = list(average or datasets)
    unknown = sorted(set(average) - set(datasets))
    if unknown:
        raise ValueError(f"aggregate.average names datasets that are not run: {unknown}")
    results_dir, metrics_dir = Path(results_dir), Path(metrics_dir)
    n_classes = len(class_names)
    summary: dict = {}
    pooled = []
    for dataset in datasets:
        rows = read_folds(results_dir / dataset)
        s = score(rows["gt"], rows["pred"], n_classes)
        summary[dataset] = {"uf1": round(s.uf1, 4), "uar": round(s.uar, 4), "n_samples": s.n,
                            "n_folds": int(rows["subject"].nunique())}
        log.info("%s: UF1 %.4f UAR %.4f over %d samples, %d folds", dataset, s.uf1, s.uar, s.n,
                 summary[dataset]["n_folds"])
        write_megc_log(rows.assign(db=MEGC_DB.get(dataset, dataset)), metrics_dir / "logs" / f"{dataset}.txt")
        write_csv(metrics_dir / "per_subject" / f"{dataset}.csv", per_subject_scores(rows, n_classes))
        names = np.asarray(class_names)
        write_csv(metrics_dir / "confusion" / f"{dataset}.csv",
                  pd.DataFrame({"actual": names[rows["gt"]], "predicted": names[rows["pred"]]}))
        plot_confusion(s.confusion, class_names, f"{dataset}: UF1 {s.uf1:.3f}  UAR {s.uar:.3f}",
                       metrics_dir / "plots" / "confusion" / f"{dataset}.png")
        pooled.append(rows.assign(subject=dataset + "/" + rows["subject"]))
    summary["average"] = {k: round(float(np.mean([summary[d][k] for d in average])), 4) for k in ("uf1", "uar")}
    if len(datasets) > 1:
        rows = pd.concat(pooled, ignore_index=True)
        s = score(rows["gt"], rows["pred"], n_classes)
        summary["composite"] = {"uf1": round(s.uf1, 4), "uar": round(s.uar, 4), "n_samples": s.n,
                                "n_folds": int(rows["subject"].nunique())}
    write_json(metrics_dir / "summary.json", summary)
    return summary
