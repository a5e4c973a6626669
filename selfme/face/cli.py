"""``selfme crop``: crop and align the faces of a manifest's clips (the function the crop stage calls)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from selfme.config import set_threads
from selfme.face.align import BORDERS
from selfme.face.backends import BACKENDS
from selfme.face.config import FRAME_MODES, GRAY_MODES, IMAGE_FORMATS, CropConfig
from selfme.face.crop import crop_dataset


def config_from_args(args: argparse.Namespace) -> CropConfig:
    """Defaults, then the ``crop`` section of ``--params`` (if given), then the command-line flags."""
    config = CropConfig()
    if args.params:
        params = yaml.safe_load(Path(args.params).read_text(encoding="utf-8")) or {}
        if "crop" not in params:
            raise KeyError(f"{args.params} has no 'crop' section")
        config = CropConfig.from_mapping(params["crop"])
    return config.replace(backend=args.backend, size=args.size, eye_distance=args.eye_distance,
                          eye_y=args.eye_y, gray=args.gray, frames=args.frames, image_format=args.image_format,
                          border=args.border, drift_check_frames=args.drift_check_frames,
                          max_failure_rate=args.max_failure_rate, workers=args.workers)


def print_summary(summary: dict) -> None:
    """One line a researcher reads first (clips, failures, throughput), then the problem counts."""
    print(f"crop {summary['dataset']}: {summary['n_cropped']} cropped, {summary['n_skipped_up_to_date']} up to "
          f"date, {summary['n_failed']} failed of {summary['n_clips']} clips; {summary['frames_written']} frames "
          f"written in {summary['seconds']:.1f} s ({summary['frames_per_second']:.1f} frames/s); output: "
          f"{summary['n_ok']} clips, {summary['frames_in_output']} frames, ground truth for "
          f"{summary['ground_truth_in_output']} clip(s)")
    if summary["problems"]:
        print("problems:", json.dumps(summary["problems"]))


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    set_threads(config.threads)  # as the crop stage does: the landmark networks' sums follow the thread count
    summary = crop_dataset(args.manifest, args.out, config=config, ground_truth=args.ground_truth,
                           force=args.force, progress=not args.no_progress)
    print_summary(summary)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("crop", help="crop and align faces (one similarity transform per clip, from "
                                           "the onset frame's landmarks, applied to every frame)")
    p.add_argument("--manifest", required=True, help="manifest CSV (from `selfme manifest` / the prepare stage)")
    p.add_argument("--out", required=True, help="output folder: crops, manifest.csv, failures.csv, summary.json")
    p.add_argument("--params", default=None, help="a params.yaml whose `crop` section gives the defaults")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="landmark backend (default dlib)")
    p.add_argument("--size", type=int, default=None, help="crop side in pixels (default 128; paper 256)")
    p.add_argument("--eye-distance", type=float, default=None, help="inter-ocular distance / size (0.34)")
    p.add_argument("--eye-y", type=float, default=None, help="eye-line height / size (0.37)")
    p.add_argument("--gray", choices=GRAY_MODES, default=None, help="grey sources: keep 1 channel or replicate")
    p.add_argument("--frames", choices=FRAME_MODES, default=None, help="onset..offset (clip) or every frame (all)")
    p.add_argument("--image-format", choices=IMAGE_FORMATS, default=None, help="file type of the crops")
    p.add_argument("--border", choices=sorted(BORDERS), default=None, help="fill outside the source frame")
    p.add_argument("--drift-check-frames", type=int, default=None, help="extra frames checked for eye drift")
    p.add_argument("--max-failure-rate", type=float, default=None, help="fail above this fraction of clips")
    p.add_argument("--workers", type=int, default=None, help="frame-warping threads (0: one per core)")
    p.add_argument("--ground-truth", default=None,
                   help="folder of <subject>/<clip>.npy onset->apex fields to map into crop pixels")
    p.add_argument("--force", action="store_true", help="recrop clips that are up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
