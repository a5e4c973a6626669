"""DVC stage loso@<dataset>: leave-one-subject-out SCViT, results/<dataset>/<subject>.csv per fold.

    python -m stages.loso --dataset synthme --motions data/faces/synthme

Reads the ``scvit`` and ``loso`` sections and ``prepare.protocol`` from params.yaml. --motions is the
extract stage's motion index CSV (or, until it exists, the face-crop folder whose manifest names
SynthME's ground-truth motion). Folds whose results match the parameters and data are skipped.
"""

from __future__ import annotations

import argparse
import sys

from selfme.log import setup_logging
from selfme.scvit import WeightsNotFound
from selfme.scvit.cli import loso, print_result
from stages._params import load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key of params.yaml's datasets section")
    parser.add_argument("--motions", default=None, help="motion index CSV or folder (default data/faces/<dataset>)")
    parser.add_argument("--labels", default=None, help="labels CSV when --motions is a folder of motion images")
    parser.add_argument("--out", default=None, help="default results/<dataset>")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("scvit", "loso", "prepare")
    out = args.out or f"results/{args.dataset}"
    try:
        result = loso(motions=args.motions or f"data/faces/{args.dataset}", labels=args.labels, out=out,
                      dataset=args.dataset, protocol=params["prepare"].get("protocol", "megc3"),
                      scvit=params["scvit"], loso_params=params["loso"])
    except WeightsNotFound as exc:  # says which file is missing and where it goes
        print(f"loso@{args.dataset}: {exc}", file=sys.stderr)
        return 2
    print_result(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
