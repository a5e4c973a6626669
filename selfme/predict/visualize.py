"""``selfme visualize``: Fig. 5-style panels. One row per clip: onset, apex, the learned motion, and
Grad-CAM of the model trained with the SC loss next to one trained without it (omega = 0).

Both models are bundles (the train_full stage; the no-SC one with ``-S scvit.omega=0`` and another
``--out``). When their front ends agree (same crop, extract, motion learner and input settings, the
case for two train_full runs that differ only in scvit/loso keys) both classifiers see the very same
motion; otherwise each bundle crops and computes its own. Clips come as paths (onset = first frame,
apex spotted) or as rows of a manifest CSV (its frames_dir, onset, apex and ground-truth label).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from selfme.datasets.frames import resolve_manifest_path
from selfme.flow.viz import motion_figure
from selfme.io import write_image
from selfme.predict.gradcam import overlay
from selfme.predict.predict import Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ClipItem:
    """A clip to draw: its path, optional key frames and ground-truth label, and a short name."""

    path: str
    name: str
    onset: int | None = None
    apex: int | None = None
    label: str | None = None


def manifest_items(manifest: str | os.PathLike, *, limit: int) -> list[ClipItem]:
    """The first ``limit`` clips of a manifest CSV, one per class in turn (so a few rows show every class)."""
    frame = pd.read_csv(manifest, dtype={"subject": str, "clip": str})
    missing = [c for c in ("subject", "clip", "frames_dir", "onset", "apex", "label") if c not in frame.columns]
    if missing:
        raise ValueError(f"{manifest} lacks the column(s) {missing}")
    groups = [g for _, g in frame.groupby("label", sort=True)]
    rows, depth = [], 0
    while len(rows) < min(limit, len(frame)):
        for g in groups:
            if depth < len(g) and len(rows) < limit:
                rows.append(g.iloc[depth])
        depth += 1
    items = []
    for r in rows:
        path = resolve_manifest_path(str(r["frames_dir"]), manifest)
        items.append(ClipItem(path=str(path), name=f"{r['subject']}/{r['clip']}", onset=int(r["onset"]),
                              apex=int(r["apex"]), label=str(r["label"])))
    return items


def _column_label(predictor: Predictor, probs: np.ndarray, index: int) -> str:
    """Tile caption: SC (the bundle was trained with omega > 0) or no SC, the predicted class, its probability."""
    sc = "SC" if float(predictor.bundle.payload["scvit"].get("omega", 0.0)) > 0 else "no SC"
    return f"{sc}: {predictor.bundle.class_names[index]} {probs[index]:.2f}"


def visualize(items: Sequence[ClipItem], *, model: Predictor, compare: Predictor | None, out: str | os.PathLike,
              tile: int = 160) -> list[dict[str, Any]]:
    """Write the figure to ``out`` (PNG, or JPEG for a .jpg name); returns one record per clip (key
    frames and both predictions)."""
    if not items:
        raise ValueError("no clips to visualize")
    shared = compare is not None and compare.bundle.front_end() == model.bundle.front_end()
    if compare is not None and not shared:
        log.info("the two bundles differ before the classifier: each computes its own motion")
    rows, records = [], []
    for item in items:
        with tempfile.TemporaryDirectory(prefix="selfme-visualize-") as workdir:
            prepared = model.prepare(item.path, onset=item.onset, apex=item.apex, workdir=workdir)
        probs, cam, index = model.classify(prepared.flow)
        apex_title = (f"apex {prepared.apex}: {item.label}" if item.label
                      else f"apex {prepared.apex} ({prepared.apex_source})")
        panels = [(item.name, prepared.onset_image), (apex_title, prepared.apex_image),
                  ("learned motion" if model.bundle.motion_method == "selfme" else model.bundle.motion_method,
                   prepared.flow),
                  (_column_label(model, probs, index), overlay(prepared.apex_image, cam))]
        record = {"clip": item.name, "label": item.label, "onset": prepared.onset, "apex": prepared.apex,
                  "model": model.bundle.class_names[index], "model_p": round(float(probs[index]), 4)}
        if compare is not None:
            other = prepared
            if not shared:
                with tempfile.TemporaryDirectory(prefix="selfme-visualize-") as workdir:
                    other = compare.prepare(item.path, onset=item.onset, apex=item.apex, workdir=workdir)
            probs2, cam2, index2 = compare.classify(other.flow)
            panels.append((_column_label(compare, probs2, index2), overlay(other.apex_image, cam2)))
            record.update(compare=compare.bundle.class_names[index2], compare_p=round(float(probs2[index2]), 4))
        rows.append(motion_figure(panels, tile=tile))
        records.append(record)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    write_image(Path(out), np.vstack(rows))
    return records
