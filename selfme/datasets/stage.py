"""The prepare@<dataset> stage as one function (the stage script only parses its paths and reads params.yaml)."""

from __future__ import annotations

import sys
from typing import Any, Mapping

from selfme.config import ParamsError, did_you_mean
from selfme.datasets.config import PrepareConfig, load_datasets
from selfme.datasets.manifest import build_manifest, write_manifest


def run(stage: str, *, params: Mapping[str, Any], dataset: str, out_dir: str = "data/manifests") -> int:
    """``<out_dir>/<dataset>.csv`` (and its exclusions and report) from the dataset's sheet and frames
    (params: the ``datasets`` and ``prepare`` sections; ``stage`` names the stage in messages). Exit code
    2 on bad input data (one line naming the file)."""
    datasets = load_datasets(params["datasets"])
    if dataset not in datasets:
        raise ParamsError(f"datasets.{dataset}: missing entry{did_you_mean(dataset, datasets)}")
    entry = datasets[dataset]
    prep = PrepareConfig.from_mapping(params["prepare"])
    try:
        result = build_manifest(
            entry.adapter or dataset, entry.root, annotations=entry.annotations,
            protocol=prep.protocol, allow_missing_frames=prep.allow_missing_frames,
            apex_missing=prep.apex_missing)
    except (FileNotFoundError, ValueError) as exc:  # bad input data: one line naming the file
        print(f"{stage}@{dataset}: error: {exc}", file=sys.stderr)
        return 2
    report = write_manifest(result, f"{out_dir}/{dataset}.csv")
    print(f"{stage}@{dataset}: {report['n_samples']} samples, {report['n_subjects']} subjects, "
          f"{report['per_class']}, {report['n_excluded']} excluded")
    return 0
