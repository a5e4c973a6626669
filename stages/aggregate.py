"""DVC stage aggregate: all datasets' LOSO fold predictions -> metrics/summary.json, logs, plots.

    python -m stages.aggregate

Every seed of ``loso.seeds`` is scored on its own (TP/FP/FN pooled over the folds, MEGC2019) and
summary.json reports the mean and sample std over the seeds (selfme.metrics.aggregate).
"""

from __future__ import annotations

import argparse
import json
import sys

from selfme.datasets import class_names
from selfme.datasets.config import PrepareConfig
from selfme.metrics.config import AggregateConfig
from selfme.log import setup_logging
from selfme.metrics.aggregate import aggregate
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default="results")
    parser.add_argument("--metrics", default="metrics")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("datasets", "prepare", "aggregate", "loso")
    prepare, section = PrepareConfig.from_mapping(params["prepare"]), AggregateConfig.from_mapping(params["aggregate"])
    summary = aggregate(args.results, list(params["datasets"]), class_names(prepare.protocol),
                        metrics_dir=args.metrics, average=section.average, seeds=params["loso"].get("seeds", [0]))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
