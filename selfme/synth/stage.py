"""The synth stage as one function (the stage script only parses its paths and reads params.yaml)."""

from __future__ import annotations

from typing import Any, Mapping

from selfme.synth.config import SynthConfig
from selfme.synth.dataset import generate_synthme


def run(stage: str, *, params: Mapping[str, Any], out: str = "data/raw/synthme") -> int:
    """Generate SynthME into ``out`` (replaced atomically) from the ``synth`` section of ``params``."""
    summary = generate_synthme(out, SynthConfig.from_mapping(params["synth"]))
    print(f"synthme: {summary['n_clips']} clips from {summary['n_subjects']} subjects "
          f"({summary['counts_per_emotion']}) -> {out}")
    return 0
