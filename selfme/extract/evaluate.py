"""Every motion method side by side on a dataset with ground-truth motion (SynthME): metrics/motion.json.

Each variant is the ``extract`` section with a few keys overridden (e.g. ``{method: tvl1}`` or
``{method: selfme, bspline: false}``); its motion is computed in memory (nothing is stored), compared with
the ground truth on the regions of :mod:`selfme.extract.quality`, and timed. The figure of a clip puts the
ground truth and every variant's gamma-1 motion on the ground truth's colour scale (larger motion saturates).

``held_out`` (clip names ``subject/clip``, e.g. the clips the motion learner's stages held out) adds, per
variant, ``epe_held_out`` (the same figures on those clips only) and ``zero_motion_epe_held_out``; the
figures then show held-out clips first.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from selfme.datasets import read_manifest
from selfme.extract.config import ExtractConfig
from selfme.extract.dataset import clip_jobs
from selfme.extract.engine import MotionEngine
from selfme.extract.quality import clip_quality, regions
from selfme.flow.viz import motion_figure
from selfme.io import atomic_dir, read_image, write_image, write_json

log = logging.getLogger(__name__)


def _truth_jobs(manifest, manifest_path, held: set[str], max_clips: int) -> tuple[list[dict], list[bool]]:
    """The clips with a ground truth (held-out ones first: they are the ones plotted), at most
    ``max_clips`` of them, and which of them are held out."""
    jobs = [j for j in clip_jobs(manifest, manifest_path, Path(".")) if j["truth"] is not None]
    name_of = [f"{j['row']['subject']}/{j['row']['clip']}" for j in jobs]
    missing = held - set(name_of)
    if missing:
        raise ValueError(f"held-out clips without a ground truth in {manifest_path}: {sorted(missing)[:5]}")
    if held:
        jobs = [j for n, j in zip(name_of, jobs) if n in held] + [j for n, j in zip(name_of, jobs) if n not in held]
    if max_clips > 0:
        jobs = jobs[:max_clips]
    if not jobs:
        raise ValueError(f"no clip of {manifest_path} has a ground-truth motion (column ground_truth)")
    return jobs, [f"{j['row']['subject']}/{j['row']['clip']}" in held for j in jobs]


def _run_variant(name: str, config: ExtractConfig, engine: MotionEngine, frames, truths, masks, *,
                 plot_clips: int, progress: bool) -> tuple[list[dict], list[float], list[tuple], list[np.ndarray]]:
    """(per-clip quality, seconds per pair, (folding before, after) scaling and squaring, the flows at
    gamma 1 of the first ``plot_clips`` clips) of one variant over every clip."""
    per_clip, seconds, folds, shown = [], [], [], []
    starts = range(0, len(frames), config.batch_size)
    for start in tqdm(starts, desc=f"evaluate {name}", unit="batch", disable=not progress):
        batch = frames[start:start + config.batch_size]
        results = engine.compute([a for a, _ in batch], [b for _, b in batch], with_gamma1=True)
        for k, result in enumerate(results):
            i = start + k
            per_clip.append(clip_quality(result.flow, truths[i], masks[i], gamma=config.applied_gamma,
                                         flow_gamma1=result.flow_gamma1))
            seconds.append(result.seconds)
            folds.append((result.folding_raw, result.folding))
            if i < plot_clips:
                at_one = result.flow_gamma1
                shown.append(result.flow / config.applied_gamma if at_one is None else at_one)
    return per_clip, seconds, folds, shown


def _variant_figures(config: ExtractConfig, per_clip: list[dict], folds: list[tuple], is_held: list[bool], *,
                     with_held: bool) -> dict[str, Any]:
    """A variant's metrics: mean EPE per region (and over the held-out clips), folding before and after
    scaling and squaring."""
    figures = {"method": config.method, "gamma": config.applied_gamma, "epe": _mean_epe(per_clip, zero=False)}
    if with_held:
        figures["epe_held_out"] = _mean_epe([q for q, h in zip(per_clip, is_held) if h], zero=False)
    return {**figures, "folding_before_ss": round(float(np.mean([f[0] for f in folds])), 6),
            "folding_after_ss": round(float(np.mean([f[1] for f in folds])), 6),
            "clips_folding_before_ss": int(sum(f[0] > 0 for f in folds)),
            "clips_folding_after_ss": int(sum(f[1] > 0 for f in folds))}


def _write_plots(plots_dir: str | os.PathLike, jobs: list[dict], frames, truths,
                 shown: Mapping[str, list[np.ndarray]], plot_clips: int) -> None:
    with atomic_dir(plots_dir) as tmp:
        for i, job in enumerate(jobs[:plot_clips]):
            panels = [("onset", frames[i][0]), ("ground truth", truths[i])]
            panels += [(name, flows[i]) for name, flows in shown.items() if i < len(flows)]
            # the ground truth's scale: a method's outlier (larger motion) saturates instead of darkening the rest
            scale = float(np.hypot(truths[i][..., 0], truths[i][..., 1]).max()) or None
            write_image(tmp / f"{job['row']['subject']}_{job['row']['clip']}.png",
                        motion_figure(panels, max_magnitude=scale))


def evaluate_methods(manifest_path: str | os.PathLike, variants: Mapping[str, Mapping[str, Any]], *,
                     extract: Mapping[str, Any] | None = None, model_path: str | os.PathLike | None = None,
                     learner=None, metrics_path: str | os.PathLike | None = None,
                     plots_dir: str | os.PathLike | None = None, plot_clips: int = 4, max_clips: int = 0,
                     held_out: Sequence[str] | None = None, timing_path: str | os.PathLike | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Figures of every variant on the manifest's clips that have a ground truth (see the module docstring).

    Returns {"dataset", "clips", "variants": {name: {...}}, "timing": {name: {...}}}; ``metrics_path`` gets
    all but the timing (time per pair and device differ between identical runs), ``timing_path`` that.
    """
    manifest = read_manifest(manifest_path)
    held = set(held_out or ())
    jobs, is_held = _truth_jobs(manifest, manifest_path, held, max_clips)
    frames = [(read_image(j["onset_file"]), read_image(j["apex_file"])) for j in jobs]
    truths = [np.load(j["truth"]).astype(np.float32) for j in jobs]
    masks = [regions(t, j["row"]) for t, j in zip(truths, jobs)]
    shown: dict[str, list[np.ndarray]] = {}
    timing: dict[str, dict[str, Any]] = {}  # run times: apart from the metrics (they differ between runs)
    out: dict[str, Any] = {"dataset": str(manifest["dataset"].iloc[0]), "clips": len(jobs), "variants": {}}
    for name, overrides in variants.items():
        config = ExtractConfig.from_mapping(extract, **dict(overrides))
        engine = MotionEngine(config, model_path=model_path if config.method == "selfme" else None,
                              learner=learner if config.method == "selfme" else None)
        per_clip, seconds, folds, flows = _run_variant(name, config, engine, frames, truths, masks,
                                                       plot_clips=plot_clips, progress=progress)
        if flows:
            shown[name] = flows
        figures = out["variants"][name] = _variant_figures(config, per_clip, folds, is_held, with_held=bool(held))
        timing[name] = {"seconds_per_pair": round(float(np.mean(seconds)), 5),
                        "pairs_per_second": round(1.0 / max(float(np.mean(seconds)), 1e-9), 3),
                        "device": str(engine.device)}
        log.info("%s: EPE all %.4f face %s expression %s px, folding %.4f -> %.4f, %.1f pairs/s", name,
                 figures["epe"].get("all", float("nan")), figures["epe"].get("face"), figures["epe"].get("expression"),
                 figures["folding_before_ss"], figures["folding_after_ss"], timing[name]["pairs_per_second"])
    zero = [clip_quality(np.zeros_like(t), t, m, gamma=1.0, flow_gamma1=None) for t, m in zip(truths, masks)]
    out["zero_motion_epe"] = _mean_epe(zero, zero=True)
    if held:
        out["held_out_clips"] = int(sum(is_held))
        out["zero_motion_epe_held_out"] = _mean_epe([q for q, h in zip(zero, is_held) if h], zero=True)
    if metrics_path is not None:
        write_json(metrics_path, out)
    if timing_path is not None:
        write_json(timing_path, {"dataset": out["dataset"], "variants": timing})
    if plots_dir is not None:
        _write_plots(plots_dir, jobs, frames, truths, shown, plot_clips)
    return {**out, "timing": timing}


def _mean_epe(per_clip: list[dict[str, float | None]], *, zero: bool) -> dict[str, float]:
    """Mean over clips of each ``epe_<name>`` figure (``zero``: the ``epe_<region>_zero`` ones), by name."""
    if not per_clip:
        return {}
    keys = [k for k in per_clip[0] if k.startswith("epe_") and k.endswith("_zero") == zero]
    return {(k[4:-5] if zero else k[4:]): round(float(np.mean([q[k] for q in per_clip if q.get(k) is not None])), 5)
            for k in keys if any(q.get(k) is not None for q in per_clip)}
