"""The one device resolver: a ``device`` parameter (``auto``, ``cpu``, ``cuda``, ``cuda:1``) -> torch.device;
and the one mixed-precision switch (``amp: none | bf16``) that LOSO training and extraction share."""

from __future__ import annotations

import contextlib

import torch

#: Values of an ``amp`` parameter: none (float32) or bf16 (``torch.autocast`` in bfloat16).
AMP_MODES = ("none", "bf16")


def resolve_device(device: str | torch.device = "auto", *, key: str = "device") -> torch.device:
    """``auto``: the first GPU when CUDA is available, else the CPU; anything else as torch reads it.
    Asking for CUDA where there is none is a ValueError naming the parameter ``key``."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{key} {device!r} asked for, but CUDA is not available")
    return torch.device(device)


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in bfloat16 on ``device`` for ``amp`` bf16; a no-op context for none."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
