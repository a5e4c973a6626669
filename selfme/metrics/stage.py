"""The aggregate stage as one function (the stage script only parses its paths and reads params.yaml)."""

from __future__ import annotations

import json
from typing import Any, Mapping

from selfme.datasets import class_names
from selfme.datasets.config import PrepareConfig
from selfme.metrics.aggregate import aggregate
from selfme.metrics.config import AggregateConfig


def run(stage: str, *, params: Mapping[str, Any], results: str = "results", metrics: str = "metrics") -> int:
    """Score every dataset's LOSO fold predictions under ``results`` into ``metrics/summary.json``, the
    per-seed table, MEGC logs and confusion plots (params: ``datasets``, ``prepare``, ``aggregate``,
    ``loso``); every seed of ``loso.seeds`` is scored on its own, summary.json holds mean and std."""
    prepare, section = PrepareConfig.from_mapping(params["prepare"]), AggregateConfig.from_mapping(params["aggregate"])
    summary = aggregate(results, list(params["datasets"]), class_names(prepare.protocol),
                        metrics_dir=metrics, average=section.average, seeds=params["loso"].get("seeds", [0]))
    print(json.dumps(summary, indent=2))
    return 0
