"""The extract stage: onset -> apex motion of every clip of a crop manifest, stored per the data contract.

Output folder (``data/motion/<method>/<dataset>/``):

* ``<subject>/<clip>.npy``: float16 [H, W, 2], forward flow onset -> apex in crop pixels (see
  :data:`selfme.extract.config.CONVENTION`), gamma applied to the learned motion;
* ``<subject>/<clip>.json``: sidecar: method, gamma, bspline, ss_steps, crop size, source checksum
  (SHA-256 of the onset and apex files), model checksum, the method's parameters, the skip key, the
  compute time and the clip's quality figures (folding; EPE where there is a ground truth);
* ``index.csv``: the manifest rows plus ``motion_path``, ``motion_method``, ``motion_gamma``.

A clip whose sidecar carries the same key (``selfme.cache``: parameters, torch threads, source, model and
ground-truth checksums, and the digest of the extraction code) is skipped; files of clips no longer in
the manifest are removed. The npy is written before its sidecar, both atomically, so an interrupted run
leaves no clip that a rerun would trust.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from selfme.cache import code_digest, item_key, read_record, sha256_hex, write_record
from selfme.datasets import read_manifest
from selfme.datasets.frames import key_frame_files, resolve_manifest_path
from selfme.extract.config import CONVENTION, FORMAT, ExtractConfig
from selfme.extract.engine import MotionEngine
from selfme.extract.quality import clip_quality, regions, summarize
from selfme.flow.viz import motion_figure
from selfme.io import atomic_dir, file_sha256, read_image, write_csv, write_image, write_json, write_npy

log = logging.getLogger(__name__)
#: The module whose import closure computes a clip's motion (its code digest keys every sidecar).
EXTRACT_MODULE = "selfme.extract.dataset"


def clip_jobs(manifest: pd.DataFrame, manifest_path: str | os.PathLike | None, out_dir: Path) -> list[dict]:
    """One job per manifest row: frame files, checksums and output paths."""
    jobs = []
    for row in manifest.to_dict("records"):
        _, onset_file, apex_file = key_frame_files(str(row["frames_dir"]), row["onset"], row["apex"],
                                                   name=f"{row['subject']}/{row['clip']}", manifest_path=manifest_path)
        truth = str(row.get("ground_truth") or "")
        truth_path = resolve_manifest_path(truth, manifest_path) if truth and truth != "nan" else None
        if truth_path is not None and not truth_path.is_file():
            truth_path = None
        stem = out_dir / str(row["subject"]) / str(row["clip"])
        jobs.append({"row": row, "onset_file": onset_file, "apex_file": apex_file,
                     "source_checksum": sha256_hex(file_sha256(p) for p in (onset_file, apex_file)),
                     "truth": truth_path,
                     "truth_checksum": file_sha256(truth_path) if truth_path else None,
                     "npy": stem.with_suffix(".npy"), "json": stem.with_suffix(".json")})
    return jobs


def clip_key(config: ExtractConfig, job: Mapping[str, Any], model_checksum: str | None, *, code: str) -> str:
    """A clip's key (``selfme.cache``): the method's parameters, the torch thread count (the learner's
    float sums follow it), the clip's mask, the source, model and ground-truth checksums and ``code``,
    the digest of the extraction code (``code_digest(EXTRACT_MODULE)``)."""
    params = {"format": FORMAT, "method": config.method, "params": config.method_params(),
              "threads": torch.get_num_threads(),
              "mask": [str(job["row"].get("landmarks", "")), str(job["row"].get("transform", ""))]}
    inputs = {"source": job["source_checksum"], "model": model_checksum, "truth": job["truth_checksum"]}
    return item_key(params=params, inputs=inputs, code=code)


def _up_to_date(job: Mapping[str, Any], key: str) -> dict | None:
    """The clip's sidecar when its motion file exists and the sidecar holds ``key``."""
    return read_record(job["json"], key) if job["npy"].is_file() else None


def _sidecar(config: ExtractConfig, engine: MotionEngine, job: Mapping[str, Any], result,
             quality: dict) -> dict[str, Any]:
    row = job["row"]
    h, w = result.flow.shape[:2]
    return {"format": FORMAT, "dataset": row.get("dataset"), "subject": str(row["subject"]), "clip": str(row["clip"]),
            "method": config.method, "gamma": config.applied_gamma,
            "bspline": config.bspline if config.method == "selfme" else None,
            "ss_steps": config.method_params().get("ss_steps") if config.method == "selfme" else None,
            "source_frame": config.source_frame if config.method == "selfme" else None,
            "crop_size": [h, w], "shape": [h, w, 2], "dtype": "float16", "convention": CONVENTION,
            "onset": int(row["onset"]), "apex": int(row["apex"]),
            "onset_file": Path(job["onset_file"]).as_posix(), "apex_file": Path(job["apex_file"]).as_posix(),
            "source_checksum": job["source_checksum"], "model_checksum": engine.model_checksum,
            "ground_truth_checksum": job["truth_checksum"], "params": config.method_params(), "quality": quality}


def _prune(out_dir: Path, keep: set[Path]) -> int:
    """Remove clip files (<subject>/<clip>.npy|.json) that are not in ``keep``; return how many."""
    removed = 0
    if not out_dir.is_dir():
        return 0
    for sub in out_dir.iterdir():
        if not sub.is_dir() or sub.name.startswith("."):
            continue
        for path in sub.iterdir():
            if path.suffix in (".npy", ".json") and path not in keep:
                path.unlink()
                removed += 1
        if not any(sub.iterdir()):
            sub.rmdir()
    return removed


def _extract_batch(engine: MotionEngine, config: ExtractConfig, jobs: list[dict], keys: list[str],
                   sidecars: list[dict | None], positions: list[int]) -> list[float]:
    """Compute one batch of clips, write each motion and then its sidecar (``sidecars[positions[k]]``);
    returns the seconds per pair."""
    onsets = [read_image(job["onset_file"]) for job in jobs]
    apexes = [read_image(job["apex_file"]) for job in jobs]
    shapes = {a.shape[:2] for a in onsets + apexes}
    if len(shapes) != 1:
        raise ValueError(f"frames of different sizes in one batch: {sorted(shapes)} (crops must share a size)")
    results = engine.compute(onsets, apexes, with_gamma1=any(job["truth"] is not None for job in jobs))
    for job, key, position, result in zip(jobs, keys, positions, results):
        quality: dict[str, Any] = {
            "folding_raw": round(result.folding_raw, 6), "folding": round(result.folding, 6),
            "mean_magnitude": round(float(np.linalg.norm(result.flow, axis=-1).mean()), 5)}
        if job["truth"] is not None:
            truth = np.load(job["truth"]).astype(np.float32)
            if truth.shape != result.flow.shape:
                raise ValueError(f"ground truth {job['truth']} is {truth.shape}, the motion {result.flow.shape}")
            quality.update(clip_quality(result.flow, truth, regions(truth, job["row"]),
                                        gamma=config.applied_gamma, flow_gamma1=result.flow_gamma1))
        write_npy(job["npy"], result.flow.astype(np.float16))
        sidecars[position] = write_record(job["json"], _sidecar(config, engine, job, result, quality), key=key)
    return [result.seconds for result in results]


def _speed(seconds: list[float]) -> dict[str, float]:
    """Mean seconds per pair and pairs per second (nothing when no pair was computed)."""
    if not seconds:
        return {}
    return {"seconds_per_pair": round(float(np.mean(seconds)), 5),
            "pairs_per_second": round(1.0 / max(float(np.mean(seconds)), 1e-9), 3)}


def extract_dataset(manifest_path: str | os.PathLike, out_dir: str | os.PathLike, *, config: ExtractConfig,
                    model_path: str | os.PathLike | None = None, learner=None,
                    metrics_path: str | os.PathLike | None = None, plots_dir: str | os.PathLike | None = None,
                    timing_path: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """Extract (or skip) every clip of the crop manifest; write index.csv, the metrics and the figures.

    Run times and the device go to ``timing_path`` only (they differ between identical runs, so neither
    the sidecars inside the DVC output nor the metrics hold them).

    Returns the mean figures of :func:`selfme.extract.quality.summarize` (what ``metrics_path`` gets) plus
    counts of computed / skipped / removed clips.
    """
    out_dir = Path(out_dir)
    manifest = read_manifest(manifest_path)
    if manifest.empty:
        raise ValueError(f"manifest {manifest_path} has no clips")
    if config.method != "selfme" and config.gamma != 1:
        log.info("extract.gamma %.3g applies to the learned motion only; %s flows are stored unscaled",
                 config.gamma, config.method)
    jobs = clip_jobs(manifest, manifest_path, out_dir)
    engine = MotionEngine(config, model_path=model_path, learner=learner)
    code = code_digest(EXTRACT_MODULE)
    keys = [clip_key(config, job, engine.model_checksum, code=code) for job in jobs]
    sidecars: list[dict | None] = [_up_to_date(job, key) for job, key in zip(jobs, keys)]
    pending = [i for i, s in enumerate(sidecars) if s is None]
    log.info("%s: %d clips, %d up to date, %d to extract (%s)", out_dir, len(jobs), len(jobs) - len(pending),
             len(pending), config.method)
    batches = [pending[i:i + config.batch_size] for i in range(0, len(pending), config.batch_size)]
    seconds: list[float] = []
    for batch in tqdm(batches, desc=f"extract {config.method}", unit="batch", disable=not progress):
        seconds += _extract_batch(engine, config, [jobs[i] for i in batch], [keys[i] for i in batch],
                                  sidecars, batch)
    removed = _prune(out_dir, {p for job in jobs for p in (job["npy"], job["json"])})
    index = manifest.copy()
    index["motion_path"] = [job["npy"].as_posix() for job in jobs]
    index["motion_method"] = config.method
    index["motion_gamma"] = config.applied_gamma
    write_csv(out_dir / "index.csv", index)
    figures = {"dataset": str(manifest["dataset"].iloc[0]), **summarize([s for s in sidecars if s])}
    if metrics_path is not None:
        write_json(metrics_path, figures)  # the run's figures only: no counts that change from run to run
    timing = {"dataset": figures["dataset"], "method": config.method, "computed": len(pending),
              "device": str(engine.device), **_speed(seconds)}
    if timing_path is not None:
        write_json(timing_path, timing)
    summary = {**figures, "timing": timing, "computed": len(pending), "skipped": len(jobs) - len(pending),
               "removed": removed}
    if plots_dir is not None:
        label = f"{config.method} (gamma {config.gamma:g})" if config.method == "selfme" else config.method
        write_plots(jobs, plots_dir, config.plot_clips, title=label)
    log.info("%s: computed %d, skipped %d, removed %d files", out_dir, summary["computed"], summary["skipped"],
             removed)
    return summary


def write_plots(jobs: list[dict], plots_dir: str | os.PathLike, n: int, *, title: str) -> list[Path]:
    """Flow-colour figures (onset, apex, stored motion, ground truth) of the first ``n`` clips; the folder
    is replaced as a whole."""
    written = []
    with atomic_dir(plots_dir) as tmp:
        for job in jobs[:n]:
            flow = np.load(job["npy"]).astype(np.float32)
            panels = [("onset", read_image(job["onset_file"])), ("apex", read_image(job["apex_file"])),
                      (title, flow)]
            if job["truth"] is not None:
                panels.append(("ground truth", np.load(job["truth"]).astype(np.float32)))
            name = f"{job['row']['subject']}_{job['row']['clip']}.png"
            write_image(tmp / name, motion_figure(panels))
            written.append(Path(plots_dir) / name)
    return written
