"""The crop@<dataset> stage as one function (the stage script only parses its paths and reads params.yaml)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from selfme.config import set_threads
from selfme.face.cli import print_summary
from selfme.face.config import CropConfig
from selfme.face.crop import CropFailureRate, crop_dataset

def run(stage: str, *, params: Mapping[str, Any], dataset: str, manifest_dir: str = "data/manifests",
        out_dir: str = "data/faces") -> int:
    """Aligned face crops of every clip of ``<manifest_dir>/<dataset>.csv`` into ``<out_dir>/<dataset>/``
    (params: the ``datasets`` and ``crop`` sections; ``stage`` names the stage in messages). SynthME's
    ``ground_truth/`` motion, when the dataset has it, is mapped into crop pixels too. Exit code 1 when
    more than ``crop.max_failure_rate`` of the clips failed, 2 on bad input (one line)."""
    if dataset not in params["datasets"]:
        raise KeyError(f"params.yaml datasets has no entry {dataset!r}")
    config = CropConfig.from_mapping(params["crop"])
    set_threads(config.threads)
    gt_root = Path(params["datasets"][dataset]["root"], "ground_truth")
    try:
        summary = crop_dataset(f"{manifest_dir}/{dataset}.csv", f"{out_dir}/{dataset}",
                               config=config, ground_truth=gt_root if gt_root.is_dir() else None)
    except CropFailureRate as exc:
        print(f"{stage}@{dataset}: FAILED: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as exc:  # no manifest, or one without clips
        print(f"{stage}@{dataset}: error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0

