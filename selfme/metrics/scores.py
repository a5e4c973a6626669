"""Unweighted F1 (UF1) and unweighted average recall (UAR), MEGC2019 definitions (Eq. 17-18).

TP, FP and FN are pooled over all folds (all samples) first; then per class c
    F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c),   recall_c = TP_c / (TP_c + FN_c)
(the paper prints recall as TP / (FP + FN), a typo: this is the standard definition), and
    UF1 = mean_c F1_c,   UAR = mean_c recall_c.
A class with no ground-truth samples has no recall and is left out of UAR; it is left out of UF1 too
when nothing was predicted as it either (F1 would be 0/0), but a class that was predicted without ever
being true counts with F1 = 0. With every class present (the pooled MEGC2019 setting) both means run
over all C classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix


@dataclass(frozen=True)
class Scores:
    uf1: float
    uar: float
    n: int
    f1: tuple[float, ...]       # per class, NaN where undefined
    recall: tuple[float, ...]   # per class, NaN where the class has no samples
    confusion: np.ndarray       # [C, C], rows = ground truth, columns = prediction

    def as_dict(self, class_names: tuple[str, ...] | None = None) -> dict:
        names = class_names or tuple(str(i) for i in range(len(self.f1)))
        clean = lambda v: None if np.isnan(v) else round(float(v), 6)  # noqa: E731 (JSON has no NaN)
        return {
            "uf1": clean(self.uf1), "uar": clean(self.uar), "n": self.n,
            "f1": {n: clean(v) for n, v in zip(names, self.f1)},
            "recall": {n: clean(v) for n, v in zip(names, self.recall)},
            "confusion": self.confusion.tolist(),
        }


def score(y_true, y_pred, n_classes: int) -> Scores:
    """UF1 and UAR of pooled predictions (Eq. 17-18) over classes 0..n_classes-1."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    for name, y in (("label", y_true), ("prediction", y_pred)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"a {name} lies outside 0..{n_classes - 1}")
    cm = confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))
    tp = np.diag(cm).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
    uf1 = float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan")
    uar = float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan")
    return Scores(uf1, uar, int(len(y_true)), tuple(f1.tolist()), tuple(recall.tolist()), cm)


def score_by_group(frame: pd.DataFrame, n_classes: int, *, group: str, true: str = "gt",
                   pred: str = "pred") -> dict[str, Scores]:
    """Scores per value of ``group`` (e.g. per database) plus ``all`` pooled over every row."""
    out = {str(k): score(g[true], g[pred], n_classes) for k, g in frame.groupby(group, sort=False)}
    out["all"] = score(frame[true], frame[pred], n_classes)
    return out
