"""The pretrain and finetune stages as one function (the stage scripts only parse their paths and read
params.yaml); the training itself is :func:`selfme.motion.pipeline.run_stage`."""

from __future__ import annotations

import os
from typing import Any, Mapping

from selfme.motion.holdout import resolve_face_data
from selfme.motion.pipeline import run_stage

STAGES = ("pretrain", "finetune")


def run(stage: str, *, params: Mapping[str, Any], out: str | os.PathLike, checkpoints: str | os.PathLike,
        live: str | os.PathLike | None, init: str | os.PathLike | None = None,
        faces_dir: str | os.PathLike = "data/faces") -> int:
    """Train the motion learner for ``stage`` (pretrain | finetune; params: ``motion`` and the stage's
    section, plus ``datasets`` for finetune's ``data: all``, whose crops are under ``faces_dir``) into
    ``out``, with resumable checkpoints under ``checkpoints/<key>/`` and dvclive curves in ``live``."""
    if stage not in STAGES:
        raise ValueError(f"the motion learner's stages are {STAGES}, not {stage!r}")
    section = dict(params[stage])
    if stage == "finetune":
        section["data"] = resolve_face_data(section.get("data"), params["datasets"], faces_dir=faces_dir)
    history = run_stage(stage, params["motion"], section, out=out, checkpoints=checkpoints, live_dir=live,
                        init=init)
    last = history[-1] if history else {}
    summary = f"{stage}: {len(history)} epochs, final loss {last.get('loss', float('nan')):.4f}"
    if stage == "finetune" and "val_l1_reconstruction" in last:
        summary += (f", held-out onset->apex L1 {last['val_l1_reconstruction']:.4f} "
                    f"(identity {last['val_l1_identity']:.4f})")
    print(f"{summary} -> {out}")
    return 0
