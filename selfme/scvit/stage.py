"""The loso@<dataset> stage as one function (the stage script only parses its paths and reads params.yaml)."""

from __future__ import annotations

import sys
from typing import Any, Mapping

from selfme.config import ParamsError
from selfme.datasets.config import PrepareConfig
from selfme.io import write_json
from selfme.scvit.cli import loso, pipeline_samples, print_result
from selfme.scvit.factory import SCViTConfig
from selfme.scvit.results import timing_report
from selfme.scvit.train import LosoConfig


def run(stage: str, *, params: Mapping[str, Any], dataset: str, motions: str = "data/faces/{dataset}",
        labels: str | None = None, results: str = "results",
        timing: str = "metrics/timing/loso_{dataset}.json") -> int:
    """LOSO SCViT of ``dataset``'s subjects into ``<results>/<dataset>/seed_<s>/`` (params: ``scvit``,
    ``loso``, ``prepare``; ``datasets`` for ``loso.protocol: composite``, whose folds train on every
    dataset's motions, ``{dataset}`` in ``motions`` standing for each key). Run times go to ``timing``
    (empty: log only). Bad input is one line on stderr, exit code 2."""
    SCViTConfig.from_mapping(params["scvit"])  # bad keys and values: one line before any data is read
    protocol = LosoConfig.from_mapping(params["loso"]).protocol
    if protocol == "composite" and "datasets" not in params:
        raise ParamsError("datasets: missing section (loso.protocol composite pools every dataset of it)")
    datasets = list(params["datasets"]) if protocol == "composite" else [dataset]
    classes = PrepareConfig.from_mapping(params["prepare"]).protocol
    try:
        samples = pipeline_samples(dataset=dataset, motions=motions, datasets=datasets, protocol=protocol,
                                   labels=labels, classes=classes)
        result = loso(samples=samples, out=results, classes=classes, datasets=[dataset],
                      scvit=params["scvit"], loso_params=params["loso"])
    except (FileNotFoundError, ValueError, KeyError) as exc:  # bad input (weights, motions, folds): one line
        print(f"{stage}@{dataset}: error: {exc}", file=sys.stderr)
        return 2
    if timing:
        write_json(timing.replace("{dataset}", dataset), {"stage": f"{stage}@{dataset}", **timing_report(result)})
    print_result(result, results)
    return 0
