"""Cropping a dataset (the crop@<dataset> stage): every manifest clip through ``ClipCropper``, then the
cropped manifest, failures.csv and summary.json in the output folder.

Output layout (``out_dir``)::

    <subject>/<clip>/<frame files, original names>   aligned crops, same transform for every frame
    <subject>/<clip>/crop.json                       stamp: parameters+inputs hash, row, warnings
    ground_truth/<subject>/<clip>.npy                onset->apex motion in crop pixels (when given)
    manifest.csv                                     contract columns (frames_dir -> crops) + alignment
    failures.csv                                     subject, clip, problem, detail, severity
    summary.json                                     counts, problems, frames per second
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from selfme.datasets.manifest import MANIFEST_COLUMNS, read_manifest
from selfme.face import records as R
from selfme.face.backends import make_backend
from selfme.face.clip import ClipCropper, ClipJob
from selfme.face.config import CropConfig
from selfme.face.landmarks import LandmarkBackend
from selfme.face.records import EXTRA_COLUMNS, FAILURE_COLUMNS, ClipFailed, ClipResult
from selfme.face.stamp import STAMP_NAME
from selfme.io import write_csv, write_json

log = logging.getLogger(__name__)


class CropFailureRate(ValueError):
    """More clips failed than ``crop.max_failure_rate`` allows (the outputs are still written)."""


def _remove_leftovers(out_dir: Path) -> None:
    """Delete temporary folders/files of an interrupted earlier run (``selfme.io`` atomic writes)."""
    patterns = [".*.tmp", "*/.*.tmp", "*/.*.old-*", "ground_truth/*/.*.tmp"]
    for pattern in patterns:
        for path in out_dir.glob(pattern):
            log.info("removing leftover of an interrupted run: %s", path)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _remove_stale(out_dir: Path, keep: set[tuple[str, str]], keep_gt: set[tuple[str, str]]) -> int:
    """Delete cropped clip folders (recognised by their stamp) and ground-truth files that are not part
    of this run's result: clips gone from the manifest, or that failed now. Returns how many."""
    removed = 0
    for stamp in out_dir.glob(f"*/*/{STAMP_NAME}"):
        clip_dir = stamp.parent
        if (clip_dir.parent.name, clip_dir.name) not in keep:
            shutil.rmtree(clip_dir, ignore_errors=True)
            removed += 1
    for gt in out_dir.glob("ground_truth/*/*.npy"):
        if (gt.parent.name, gt.stem) not in keep_gt:
            gt.unlink(missing_ok=True)
    for folder in [*out_dir.glob("*"), *out_dir.glob("ground_truth/*")]:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def _job(row: dict[str, Any], out_dir: Path, gt_root: Path | None) -> ClipJob:
    subject, clip = str(row["subject"]), str(row["clip"])
    return ClipJob(row=row, frames_dir=Path(str(row["frames_dir"])), out_dir=out_dir / subject / clip,
                   gt_in=gt_root / subject / f"{clip}.npy" if gt_root else None,
                   gt_out=out_dir / "ground_truth" / subject / f"{clip}.npy" if gt_root else None)


#: Summary fields that describe this run rather than the output (printed and logged, not written).
RUN_ONLY_KEYS = frozenset({"n_cropped", "n_skipped_up_to_date", "ground_truth_written", "frames_written",
                           "seconds", "frames_per_second"})


def summarise(results: list[ClipResult], *, dataset: str, config: CropConfig, seconds: float,
              n_gt_inputs: int) -> dict[str, Any]:
    """The stage summary: clip counts by outcome, problems by name and severity, throughput."""
    status = Counter(r.status for r in results)
    problems: dict[str, dict[str, int]] = {}
    for r in results:
        for p in r.problems:
            problems.setdefault(p.problem, {"failure": 0, "warning": 0})[p.severity] += 1
    frames = sum(r.frames_written for r in results)
    n = len(results)
    rows = [r.row for r in results if r.row]
    return {
        "dataset": dataset,
        "backend": config.backend,
        "size": config.size,
        "n_clips": n,
        "n_ok": status["cropped"] + status["skipped"],
        "n_cropped": status["cropped"],
        "n_skipped_up_to_date": status["skipped"],
        "n_failed": status["failed"],
        "failure_rate": round(status["failed"] / n, 4) if n else 0.0,
        "max_failure_rate": config.max_failure_rate,
        "n_warnings": sum(v["warning"] for v in problems.values()),
        "problems": dict(sorted(problems.items())),
        "color_written": dict(Counter(str(r["color"]) for r in rows)),
        "ground_truth_inputs": n_gt_inputs,
        "ground_truth_in_output": sum(1 for row in rows if row.get("ground_truth")),
        "frames_in_output": sum(r.frames_in_output for r in results),
        # this run only (a rerun over unchanged inputs writes nothing):
        "ground_truth_written": sum(1 for r in results if r.ground_truth_written),
        "frames_written": frames,
        "seconds": round(seconds, 3),
        "frames_per_second": round(frames / seconds, 2) if seconds > 0 and frames else 0.0,
        "fingerprint": config.fingerprint(),
    }


def crop_dataset(manifest: str | os.PathLike | pd.DataFrame, out_dir: str | os.PathLike, *,
                 config: CropConfig, ground_truth: str | os.PathLike | None = None, force: bool = False,
                 backend: LandmarkBackend | None = None, progress: bool = True) -> dict[str, Any]:
    """Crop and align every clip of a manifest into ``out_dir`` (layout in the module docstring).

    ``ground_truth``: folder of ``<subject>/<clip>.npy`` onset->apex displacement fields in raw-frame
    pixels, mapped into crop pixels alongside. ``force`` recrops clips that are up to date. ``backend``
    replaces the one ``config`` names (tests). Raises CropFailureRate, after writing every output, when
    more than ``config.max_failure_rate`` of the clips could not be cropped; a ValueError for a manifest
    without clips.
    """
    frame = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    if frame.empty:
        raise ValueError(f"{'the manifest' if isinstance(manifest, pd.DataFrame) else manifest} has no clips to "
                         f"crop (see the prepare stage's *_excluded.csv)")
    out_dir = Path(out_dir)
    gt_root = Path(ground_truth) if ground_truth is not None else None
    if gt_root is not None and not gt_root.is_dir():
        raise FileNotFoundError(f"ground-truth folder not found: {gt_root}")
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)
    dataset = str(frame["dataset"].iloc[0])
    workers = config.workers or os.cpu_count() or 1

    def factory() -> LandmarkBackend:
        if backend is not None:
            return backend
        built = make_backend(config.backend, max_side=config.detect_max_side, options=config.backend_options())
        log.info("landmark backend %s ready", built.name)
        return built

    rows = [{k: v for k, v in r.items() if k in MANIFEST_COLUMNS} for r in frame.to_dict("records")]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crop") as pool:
        cropper = ClipCropper(config=config, backend_factory=factory, pool=pool)
        results = _crop_rows(cropper, rows, out_dir, gt_root, force=force, progress=progress, dataset=dataset)
    seconds = time.perf_counter() - start

    ok = [r for r in results if r.row]
    keep = {(str(r.row["subject"]), str(r.row["clip"])) for r in ok}
    keep_gt = {(str(r.row["subject"]), str(r.row["clip"])) for r in ok if r.row.get("ground_truth")}
    removed = _remove_stale(out_dir, keep, keep_gt)
    if removed:
        log.info("removed %d stale clip folder(s) not in this run's result", removed)

    n_gt_inputs = sum(1 for r in rows if gt_root and (gt_root / str(r["subject"]) / f"{r['clip']}.npy").is_file())
    summary = summarise(results, dataset=dataset, config=config, seconds=seconds, n_gt_inputs=n_gt_inputs)
    _write_outputs(out_dir, results, summary)
    log.info("crop %s: %d cropped, %d up to date, %d failed of %d clips; %d frames in %.1f s (%.1f frames/s)",
             dataset, summary["n_cropped"], summary["n_skipped_up_to_date"], summary["n_failed"],
             summary["n_clips"], summary["frames_written"], seconds, summary["frames_per_second"])
    _check_failure_rate(summary, config.max_failure_rate, out_dir)
    return summary


def _crop_rows(cropper: ClipCropper, rows: list[dict[str, Any]], out_dir: Path, gt_root: Path | None, *,
               force: bool, progress: bool, dataset: str) -> list[ClipResult]:
    """Every manifest row through the cropper (a row without frames_dir is a listed failure)."""
    results: list[ClipResult] = []
    bar = tqdm(rows, desc=f"crop {dataset}", unit="clip", disable=not progress)
    for row in bar:
        job = _job(row, out_dir, gt_root)
        if not str(row.get("frames_dir") or "").strip() or str(row["frames_dir"]) == "nan":
            failed = ClipFailed(R.MISSING_CLIP_FOLDER, "the manifest row has no frames_dir "
                                "(built with --allow-missing-frames?)")
            results.append(cropper.failed(job, [], failed))
            continue
        results.append(cropper.crop(job, force=force))
        bar.set_postfix(failed=sum(r.status == "failed" for r in results), refresh=False)
    return results


def _write_outputs(out_dir: Path, results: list[ClipResult], summary: dict[str, Any]) -> None:
    """manifest.csv (the cropped clips), failures.csv (every problem) and summary.json."""
    columns = MANIFEST_COLUMNS + EXTRA_COLUMNS
    write_csv(out_dir / "manifest.csv", pd.DataFrame([r.row for r in results if r.row], columns=columns))
    write_csv(out_dir / "failures.csv",
              pd.DataFrame([p.as_row() for r in results for p in r.problems], columns=FAILURE_COLUMNS))
    # summary.json is part of the DVC-tracked output: only what the output holds, not this run's timing.
    write_json(out_dir / "summary.json", {k: v for k, v in summary.items() if k not in RUN_ONLY_KEYS})


def _check_failure_rate(summary: dict[str, Any], limit: float, out_dir: Path) -> None:
    rate = summary["n_failed"] / summary["n_clips"] if summary["n_clips"] else 0.0
    if rate > limit:
        by_problem = {k: v["failure"] for k, v in summary["problems"].items() if v["failure"]}
        raise CropFailureRate(
            f"{summary['n_failed']} of {summary['n_clips']} clips ({rate:.1%}) could not be cropped, more "
            f"than crop.max_failure_rate = {limit:.1%} allows (failures by problem: {by_problem}); "
            f"see {out_dir / 'failures.csv'}")
