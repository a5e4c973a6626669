"""``selfme export-megc``: extracted motion as MEGC2019-style 28 x 28 (u, v, strain) PNGs plus labels."""

from __future__ import annotations

import argparse
import json

from selfme.extract.megc_export import MEGC_SIZE, export_megc


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-megc", help="write extracted motion as MEGC2019 (u, v, strain) PNGs and a labels CSV",
        description="Write the clips of one or more motion indexes (data/motion/<method>/<dataset>) as "
                    "MEGC2019-style <subject>_<clip>.png images (R = u, G = v, B = optical strain, each "
                    "min-max normalised) plus a headerless labels.csv (db, subject, clip, label id), readable "
                    "by `selfme loso --motions OUT --labels OUT/labels.csv`.")
    p.add_argument("--motions", required=True, action="append",
                   help="motion index CSV or its folder; repeat to pool datasets into one folder")
    p.add_argument("--out", required=True, help="output folder (replaced as a whole)")
    p.add_argument("--size", type=int, default=MEGC_SIZE, help=f"image side in pixels (default {MEGC_SIZE})")
    p.add_argument("--protocol", default="megc3", help="class list the label ids belong to (default megc3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    counts = export_megc(args.motions, args.out, size=args.size, protocol=args.protocol)
    print(json.dumps({"out": str(args.out), "images": counts}, indent=2))
    return 0
