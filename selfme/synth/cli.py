"""``selfme synth``: generate the SynthME dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from selfme.synth.config import SynthConfig
from selfme.synth.dataset import generate_synthme


def load_config_file(path: str | Path) -> dict[str, Any]:
    """SynthConfig fields from a YAML file: either the fields themselves or a params.yaml with a
    ``synth`` section."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of SynthConfig fields")
    if isinstance(data.get("synth"), dict):
        data = data["synth"]
    return data


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The config file's values (if any), overridden by the flags given on the command line."""
    values = load_config_file(args.config) if args.config else {}
    for flag, key in (("subjects", "subjects"), ("seed", "seed"), ("clips_per_subject", "clips_per_subject"),
                      ("frames_per_clip", "frames_per_clip")):
        if getattr(args, flag) is not None:
            values[key] = getattr(args, flag)
    return SynthConfig.from_mapping(values)


def run(args: argparse.Namespace) -> int:
    """The sub-command's body: generate, return exit status 0."""
    generate_synthme(args.out, config_from_args(args))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synth`` sub-command."""
    parser = subparsers.add_parser("synth", help="generate the SynthME synthetic micro-expression dataset",
                                   description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="output folder (replaced atomically)")
    parser.add_argument("--subjects", type=int, default=None, help="number of subjects (default 8)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument("--clips-per-subject", type=int, default=None, help="clips per subject (default 6)")
    parser.add_argument("--frames-per-clip", type=int, default=None, help="frames per clip (default 24)")
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML file with SynthConfig fields (or a params.yaml with a 'synth' section)")
    parser.set_defaults(func=run)
