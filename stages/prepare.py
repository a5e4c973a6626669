"""DVC stage prepare@<dataset>: build data/manifests/<dataset>.csv from the dataset's sheet and frames.

    python -m stages.prepare --dataset synthme

Reads ``datasets.<dataset>`` (adapter, root, annotations) and ``prepare`` from params.yaml.
"""

from __future__ import annotations

import argparse
import sys

from selfme.datasets.stage import run
from selfme.log import setup_logging
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key of params.yaml's datasets section")
    parser.add_argument("--out-dir", default="data/manifests")
    args = parser.parse_args(argv)
    setup_logging()
    return run("prepare", params=load_params("datasets", "prepare"), **vars(args))


if __name__ == "__main__":
    sys.exit(guarded(main))
