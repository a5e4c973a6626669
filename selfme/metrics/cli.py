"""``selfme metrics``: UF1 / UAR of a per-sample prediction log, per database and for all samples."""

from __future__ import annotations

import argparse
import json

from selfme.metrics.logs import read_megc_log, read_subject_list_log
from selfme.metrics.scores import score_by_group


def run(args: argparse.Namespace) -> int:
    if bool(args.megc_log) == bool(args.list_log):
        raise ValueError("give exactly one of --megc-log FILE or --list-log FILE")
    rows = read_megc_log(args.megc_log) if args.megc_log else read_subject_list_log(args.list_log)
    result = {}
    for name, s in score_by_group(rows, args.classes, group="db").items():
        if name == "" and args.list_log:
            continue  # the list format names no database: 'all' holds it
        result[name] = {"uf1": round(s.uf1, 4), "uar": round(s.uar, 4), "n": s.n}
    print(json.dumps(result, indent=2))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("metrics", help="UF1/UAR (MEGC2019, pooled) of a per-sample prediction log")
    p.add_argument("--megc-log", default=None, help="MEGC2019 log: '<db> <subject>' headers, '<clip> <gt> <pred>'")
    p.add_argument("--list-log", default=None, help="per-subject 'Predicted : [..]' / 'Ground Truth: [..]' log")
    p.add_argument("--classes", type=int, default=3, help="number of classes (default 3)")
    p.set_defaults(func=run)
