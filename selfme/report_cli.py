"""``selfme report``: the paper's ablation tables and sweep curves from this repository's experiments."""

from __future__ import annotations

import argparse
import json

from selfme.report import load_experiments, write_report


def run(args: argparse.Namespace) -> int:
    written = write_report(load_experiments(args.repo), args.out)
    print(json.dumps(written, indent=2))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="Tables 1, 3, 4 and omega/tau sweep plots from `dvc exp show`")
    p.add_argument("--repo", default=".", help="the DVC repository (default: here)")
    p.add_argument("--out", default="metrics", help="folder for report.md and plots/sweep_*.png")
    p.set_defaults(func=run)
