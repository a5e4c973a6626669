"""``selfme extract``: the extract stage's function on the command line (no DVC needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from selfme.config import set_threads
from selfme.extract.config import METHODS, ExtractConfig
from selfme.extract.dataset import extract_dataset


def register(subparsers) -> None:
    p = subparsers.add_parser("extract", help="onset -> apex motion of every clip of a crop manifest",
                              description="Onset -> apex motion (SelfME learner with B-spline diffeomorphic "
                                          "expansion, or TV-L1 / Farneback / DIS) of every clip of a crop manifest.")
    p.add_argument("--manifest", required=True, help="crop manifest (data/faces/<dataset>/manifest.csv)")
    p.add_argument("--out", required=True, help="output folder (data/motion/<method>/<dataset>)")
    p.add_argument("--params", default="params.yaml",
                   help="read the extract section (and motion.method) from this file when it exists")
    p.add_argument("--method", choices=METHODS, default=None, help="overrides motion.method")
    p.add_argument("--gamma", type=float, default=None, help="overrides extract.gamma")
    p.add_argument("--no-bspline", action="store_true", help="bilinear upsampling, no exponentiation")
    p.add_argument("--model", default="models/motion/finetune.pt", help="the motion learner (method selfme)")
    p.add_argument("--metrics", default=None, help="also write the summary figures to this JSON file")
    p.add_argument("--plots", default=None, help="folder for flow-colour PNGs of extract.plot_clips clips")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    section, method = {}, None
    if args.params and Path(args.params).is_file():
        params = yaml.safe_load(Path(args.params).read_text(encoding="utf-8")) or {}
        section = params.get("extract") or {}
        method = (params.get("motion") or {}).get("method")
    overrides = {}
    if args.gamma is not None:
        overrides["gamma"] = args.gamma
    if args.no_bspline:
        overrides["bspline"] = False
    return ExtractConfig.from_mapping(section, method=args.method or method or "selfme", **overrides)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    set_threads(config.threads)  # as the extract stage does: the motions' float sums follow the thread count
    summary = extract_dataset(args.manifest, args.out, config=config,
                              model_path=args.model if config.method == "selfme" else None,
                              metrics_path=args.metrics, plots_dir=args.plots, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0
