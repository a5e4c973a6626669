"""Motion accuracy against a known ground truth (SynthME) and the summary figures of a run.

End-point error (EPE) = mean over a region of |F(x) - G(x)| (pixels of the crop), G the ground-truth
forward flow onset -> apex (it includes SynthME's sub-pixel head jitter). Regions:

* ``all``: every pixel;
* ``face``: inside the convex hull of the 68 landmarks (mapped into the crop by the manifest's
  ``transform``), when the manifest has them;
* ``expression``: where the expression moves, |G(x) - median G| > 0.1 px (the median is the global jitter).

Which field is compared: ``epe_*`` uses the motion at gamma 1 (the learner without amplification; the
classical flows as they are), so that methods and gamma settings compare on the same footing;
``epe_*_stored_over_gamma`` divides the stored (gamma-amplified) field by gamma, which shows how far the
amplification of Eq. 2 is from a plain scaling. Both are reported for the learned motion when gamma != 1.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

import cv2
import numpy as np

EXPRESSION_THRESHOLD_PX = 0.1
REGIONS = ("all", "face", "expression")


def face_mask(row: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray | None:
    """Landmark convex hull in crop coordinates (bool [H, W]) from the crop manifest, or None."""
    try:
        points = np.asarray(json.loads(row["landmarks"]), dtype=np.float64)
        matrix = np.asarray(json.loads(row["transform"]), dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3 or matrix.shape != (2, 3):
        return None
    crop = points @ matrix[:, :2].T + matrix[:, 2]
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(crop).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool) if mask.any() else None


def expression_mask(truth: np.ndarray, threshold: float = EXPRESSION_THRESHOLD_PX) -> np.ndarray:
    jitter = np.median(truth.reshape(-1, 2), axis=0)
    return np.linalg.norm(truth - jitter, axis=-1) > threshold


def regions(truth: np.ndarray, row: Mapping[str, Any]) -> dict[str, np.ndarray | None]:
    shape = truth.shape[:2]
    expr = expression_mask(truth)
    return {"all": np.ones(shape, bool), "face": face_mask(row, shape), "expression": expr if expr.any() else None}


def epe(flow: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    err = np.linalg.norm(flow.astype(np.float64) - truth.astype(np.float64), axis=-1)
    if mask is None:
        return float(err.mean())
    return float(err[mask].mean()) if mask.any() else None


def clip_quality(flow: np.ndarray, truth: np.ndarray, masks: Mapping[str, np.ndarray | None], *, gamma: float,
                 flow_gamma1: np.ndarray | None) -> dict[str, float | None]:
    """EPE figures of one clip (see the module docstring); ``flow`` is the stored field (gamma applied)."""
    at_one = flow_gamma1 if flow_gamma1 is not None else (flow / gamma if gamma != 1 else flow)
    out: dict[str, float | None] = {}
    for name in REGIONS:
        mask = masks.get(name)
        if name != "all" and mask is None:
            out[f"epe_{name}"] = out[f"epe_{name}_zero"] = None
            continue
        out[f"epe_{name}"] = epe(at_one, truth, mask)
        if gamma != 1:
            out[f"epe_{name}_stored_over_gamma"] = epe(flow / gamma, truth, mask)
        out[f"epe_{name}_zero"] = epe(np.zeros_like(truth), truth, mask)
    return out


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(float(np.mean(vals)), 5) if vals else None


def summarize(sidecars: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean figures over clips from their sidecars: EPE (clips with ground truth), folding, magnitude."""
    if not sidecars:
        return {"clips": 0}
    first = sidecars[0]
    out: dict[str, Any] = {"method": first["method"], "gamma": first["gamma"], "bspline": first["bspline"],
                           "ss_steps": first["ss_steps"], "source_frame": first.get("source_frame"),
                           "clips": len(sidecars)}
    quality = [s["quality"] for s in sidecars]
    with_truth = [q for q in quality if "epe_all" in q]
    out["clips_with_ground_truth"] = len(with_truth)
    if with_truth:
        keys = [k for k in with_truth[0] if k.startswith("epe_") and not k.endswith("_zero")]
        out["epe"] = {k[4:]: _mean(q.get(k) for q in with_truth) for k in keys}
        out["epe_zero_motion"] = {r: _mean(q.get(f"epe_{r}_zero") for q in with_truth) for r in REGIONS}
    out["folding_before_ss"] = _mean(q["folding_raw"] for q in quality)
    out["folding_after_ss"] = _mean(q["folding"] for q in quality)
    out["clips_folding_before_ss"] = sum(1 for q in quality if q["folding_raw"] > 0)
    out["clips_folding_after_ss"] = sum(1 for q in quality if q["folding"] > 0)
    out["mean_magnitude_px"] = _mean(q["mean_magnitude"] for q in quality)
    return out
