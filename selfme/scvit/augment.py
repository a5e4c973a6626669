"""Motion-aware augmentation of training batches (``loso.hflip``, ``loso.shift_px``).

A motion image is a vector field, so an augmentation must move the vectors with the pixels:

* horizontal flip (probability ``hflip``): the face is mirrored, so the horizontal displacement u
  changes sign (``selfme.scvit.inputs.hflip``) and the left and right quadrants trade places: what was
  the UR region becomes the UL one, with its u negated. The SC loss's positive pairs (same or mirrored
  region) are closed under this swap, so the flip never contradicts it.
* translation by up to ``shift_px`` pixels in each direction (integers, uniform): the displacement
  vectors keep their values, only their positions move; the border is replicated. Labels never change.

Rotations are left out on purpose: rotating a flow field rotates its vectors, which mixes u and v, and
that cannot be done exactly once each channel has been min-max normalised on its own (as in MEGC2019
images). Every random draw comes from the fold's generator, in a fixed order (flips, then shifts), so
a fold is reproducible and ``hflip`` alone draws exactly what it drew before shifts existed.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from selfme.scvit.inputs import hflip as mirror


def shift(batch: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Translate each sample of [B, C, H, W] by its integer (dy, dx) in ``offsets`` [B, 2]:
    out[y, x] = in[y - dy, x - dx], the border replicated."""
    if offsets.shape != (batch.shape[0], 2):
        raise ValueError(f"offsets must be [{batch.shape[0]}, 2], got {tuple(offsets.shape)}")
    if batch.shape[0] == 0:
        return batch.clone()
    s = int(offsets.abs().max())
    if s == 0:
        return batch.clone()
    h, w = batch.shape[-2:]
    padded = F.pad(batch, (s, s, s, s), mode="replicate")
    out = torch.empty_like(batch)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, s - dy:s - dy + h, s - dx:s - dx + w]
    return out


def augment(batch: torch.Tensor, *, generator: torch.Generator, hflip: float = 0.0, shift_px: int = 0,
            negate: tuple[int, ...] | list[int] = ()) -> torch.Tensor:
    """A training batch [B, C, H, W] with random flips (probability ``hflip``; channels ``negate``
    change sign) and translations (up to ``shift_px`` pixels); the input is never modified."""
    out = batch.clone()
    n = batch.shape[0]
    if hflip > 0:
        flip = torch.rand(n, generator=generator) < hflip
        if flip.any():
            out[flip] = mirror(out[flip], negate)
    if shift_px > 0:
        offsets = torch.randint(-shift_px, shift_px + 1, (n, 2), generator=generator)
        out = shift(out, offsets)
    return out
