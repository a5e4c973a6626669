"""``selfme manifest``: build a dataset's manifest under a protocol (the function the prepare stage calls)."""

from __future__ import annotations

import argparse
import json

from selfme.datasets.adapters import ADAPTERS
from selfme.datasets.manifest import APEX_POLICIES, build_manifest, write_manifest
from selfme.datasets.protocol import CLASSES


def run(args: argparse.Namespace) -> int:
    result = build_manifest(args.dataset, args.root, annotations=args.annotations, protocol=args.protocol,
                            allow_missing_frames=args.allow_missing_frames, apex_missing=args.apex_missing)
    report = write_manifest(result, args.out)
    summary = {k: report[k] for k in ("dataset", "protocol", "n_samples", "n_subjects", "per_class",
                                      "n_excluded", "excluded_by_reason", "apex_source")}
    print(json.dumps(summary, indent=2))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("manifest", help="build a dataset manifest (CSV) under a class protocol")
    p.add_argument("--dataset", required=True, choices=sorted(ADAPTERS))
    p.add_argument("--root", required=True, help="the dataset's folder (frames, and the sheet if not given)")
    p.add_argument("--annotations", default=None, help="coding sheet (xlsx/csv); found under --root if absent")
    p.add_argument("--protocol", default="megc3", choices=sorted(CLASSES))
    p.add_argument("--out", required=True, help="manifest CSV; *_excluded.csv and *_report.json go beside it")
    p.add_argument("--allow-missing-frames", action="store_true",
                   help="build from the sheet alone (no frame folders needed), for checking")
    p.add_argument("--apex-missing", default="spot", choices=APEX_POLICIES,
                   help="where the sheet has no apex or one outside the clip: spot it, take the midpoint, or drop")
    p.set_defaults(func=run)
