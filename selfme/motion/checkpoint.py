"""Resumable training checkpoints, keyed by the parameters, data and code that produced them.

A run's checkpoints live in ``<root>/<params hash>/last.pt`` (the folder DVC keeps with ``persist: true``)
and store the hash again inside, so a checkpoint written for other parameters is never resumed. The hash
is a ``selfme.cache`` key of the run's payload (``selfme.motion.pipeline`` puts the stage's trajectory
parameters, the torch thread count, the data and init digests and the motion code's digest in it), so
editing the learner's code starts a new run too. Every value is a tensor or a plain Python container, so
``torch.load(..., weights_only=True)`` reads it; a file that does not load (truncated) or whose weights
are not finite (corrupted bytes) is never resumed: the run starts over and overwrites it.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from selfme.cache import payload_key
from selfme.io import write_json, write_torch

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "selfme-motion-checkpoint/1"
CHECKPOINT_NAME = "last.pt"
#: Keys that do not change a run's trajectory: excluded from the hash (so raising ``epochs`` resumes).
NON_TRAJECTORY_KEYS = frozenset({"epochs", "num_workers", "checkpoint_every", "image_every"})


def params_hash(payload: Mapping[str, Any]) -> str:
    """16 hex digits of the run's key: ``selfme.cache.payload_key`` of ``payload``."""
    return payload_key(payload)[:16]


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
    write_torch(path, {"format": CHECKPOINT_FORMAT, **payload})
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
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated or overwritten bytes: torch raises several kinds
        log.warning("ignoring %s: it does not load (%s: %s); training starts over", path, type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "")
        return None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or state.get("params_hash") != run_hash:
        log.warning("ignoring %s: written for other parameters (hash %s, this run %s)", path,
                    state.get("params_hash") if isinstance(state, dict) else None, run_hash)
        return None
    bad = non_finite_tensors(state.get("networks", {}))
    if bad:
        log.warning("ignoring %s: non-finite values in %s; training starts over", path, ", ".join(bad[:3]))
        return None
    return state


def non_finite_tensors(state_dict: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a (nested) state dict holding a NaN or an infinity."""
    bad = []
    for name, value in state_dict.items():
        if isinstance(value, Mapping):
            bad += [f"{name}.{inner}" for inner in non_finite_tensors(value)]
        elif torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad.append(str(name))
    return bad
