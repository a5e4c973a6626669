"""DVC stage aggregate: all datasets' LOSO fold predictions -> metrics/summary.json, logs, plots.

    python -m stages.aggregate

Every seed of ``loso.seeds`` is scored on its own (TP/FP/FN pooled over the folds, MEGC2019) and
summary.json reports the mean and sample std over the seeds (selfme.metrics.aggregate).
"""

from __future__ import annotations

import argparse
import sys

from selfme.log import setup_logging
from selfme.metrics.stage import run
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default="results")
    parser.add_argument("--metrics", default="metrics")
    args = parser.parse_args(argv)
    setup_logging()
    return run("aggregate", params=load_params("datasets", "prepare", "aggregate", "loso"), **vars(args))


if __name__ == "__main__":
    sys.exit(guarded(main))
