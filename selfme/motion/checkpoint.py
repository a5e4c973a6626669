"""Resumable training checkpoints, keyed by a hash of the parameters that produced them.

A run's checkpoints live in ``<root>/<params hash>/last.pt`` (the folder DVC keeps with ``persist: true``)
and store the hash again inside, so a checkpoint written for other parameters is never resumed. Every
value is a tensor or a plain Python container, so ``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from selfme.io import atomic_path, write_json

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "selfme-motion-checkpoint/1"
CHECKPOINT_NAME = "last.pt"
#: Keys that do not change a run's trajectory: excluded from the hash (so raising ``epochs`` resumes).
NON_TRAJECTORY_KEYS = frozenset({"epochs", "num_workers", "checkpoint_every", "image_every"})


def params_hash(payload: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of ``payload`` (sorted keys)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def resolve_checkpoint_dir(root: str | os.PathLike, hash_payload: Mapping[str, Any]) -> Path:
    """``root/<params hash>``: the only folder whose checkpoint a run with these parameters resumes."""
    return Path(root) / params_hash(hash_payload)


def trajectory_params(section: Mapping[str, Any], ignore: Sequence[str] = ()) -> dict[str, Any]:
    """The part of a stage section that determines the training trajectory (for the checkpoint hash)."""
    return {k: v for k, v in section.items() if k not in NON_TRAJECTORY_KEYS and k not in set(ignore)}


def rng_state() -> dict[str, Any]:
    """Python, numpy (legacy global) and torch (CPU and CUDA) RNG states as tensors and lists."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {"python": [py[0], torch.tensor(py[1], dtype=torch.int64), py[2]],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                       int(np_state[3]), float(np_state[4])],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    version, values, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in values.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def write_checkpoint(folder: str | os.PathLike, payload: Mapping[str, Any], *,
                     hash_payload: Mapping[str, Any] | None = None) -> Path:
    """Write ``folder/last.pt`` atomically (plus a readable params.json describing the hash)."""
    folder = Path(folder)
    path = folder / CHECKPOINT_NAME
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
    write_json(folder / "params.json", {"params_hash": payload.get("params_hash"), "epoch": payload.get("epoch"),
                                        "payload": json.loads(json.dumps(hash_payload or {}, default=str))})
    return path


def read_checkpoint(folder: str | os.PathLike, run_hash: str, *,
                    map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The checkpoint in ``folder`` if there is one written for ``run_hash``; None (with a warning for a
    foreign one) otherwise."""
    path = Path(folder) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    state = torch.load(path, map_location=map_location, weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT or state.get("params_hash") != run_hash:
        log.warning("ignoring %s: written for other parameters (hash %s, this run %s)", path,
                    state.get("params_hash"), run_hash)
        return None
    return state
