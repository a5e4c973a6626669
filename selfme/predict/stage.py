"""The train_full stage as one function (the stage script only parses its paths and reads params.yaml)."""

from __future__ import annotations

import json
import sys
from typing import Any, Mapping, Sequence

from selfme.predict.train_full import train_full
from selfme.scvit.cli import apply_overrides
from selfme.scvit.weights import WeightsNotFound


def run(stage: str, *, params: Mapping[str, Any], dataset: str, motions: str | None = None,
        model: str = "models/motion/finetune.pt", out: str | None = None,
        overrides: Sequence[str] | None = None) -> int:
    """SCViT trained on every subject of ``dataset`` (motions: default
    ``data/motion/<motion.method>/<dataset>/index.csv``), packed with the motion learner ``model`` into the
    bundle ``out`` (default ``models/bundle/<dataset>.pt``); ``overrides``: ``section.key=value``
    overrides of the scvit / loso sections. A missing ImageNet weights file is one line, exit code 2."""
    overridden = apply_overrides(params, overrides or [])
    method = params["motion"].get("method", "selfme")
    try:
        summary = train_full(
            motions=motions or f"data/motion/{method}/{dataset}/index.csv", dataset=dataset,
            protocol=params["prepare"].get("protocol", "megc3"), crop=params["crop"], motion_method=method,
            extract=params["extract"], scvit=overridden["scvit"], loso_params=overridden["loso"],
            motion_model=model if method == "selfme" else None, out=out or f"models/bundle/{dataset}.pt")
    except WeightsNotFound as exc:  # says which ImageNet weights file is missing and where it goes
        print(f"{stage}@{dataset}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
