"""The one device resolver: a ``device`` parameter (``auto``, ``cpu``, ``cuda``, ``cuda:1``) -> torch.device."""

from __future__ import annotations

import torch


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
