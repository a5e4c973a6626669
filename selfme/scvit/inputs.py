"""From a motion (or a precomputed motion image) to SCViT's input tensor.

Displacement fields [H, W, 2] (dx, dy in pixels of the face crop) become the channels named by
``channels``: ``dx``, ``dy``, ``mag`` (sqrt(dx^2 + dy^2)) and ``strain`` (optical strain magnitude
sqrt(u_x^2 + v_y^2 + (u_y + v_x)^2 / 2), dimensionless). They are resampled bilinearly to
``img_size`` x ``img_size``; the values stay in crop pixels (resampling does not rescale them).

Normalisation ``fixed`` (default) divides by fixed scales, the same for every sample, so relative
motion strength between clips survives: dx, dy, mag / ``motion_scale`` (pixels) and strain /
``strain_scale``. ``minmax`` maps each channel of each sample to [-1, 1] on its own (what MEGC-style
motion images do; it discards the motion's strength).

Motion images (uint8 PNG, e.g. MEGC2019's (u, v, strain) images, already min-max normalised per
sample) keep their channels in RGB order and map 0..255 to [-1, 1] (``fixed``, as ViT-S/16's
mean/std 0.5) or are re-min-maxed per channel (``minmax``).

A horizontal flip mirrors the face: the horizontal displacement changes sign. In both normalisations
that is an exact negation of the ``dx`` (``u``) channel (min-max of -u is 1 - min-max of u).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

MOTION_CHANNELS = ("dx", "dy", "mag", "strain")
NORMALIZATIONS = ("fixed", "minmax")
#: Channel names of 3-channel motion images (MEGC2019 composite flow images: u, v, optical strain).
IMAGE_CHANNELS = ("u", "v", "strain")
#: Channels that change sign under a horizontal flip.
HORIZONTAL = ("dx", "u")


@dataclass(frozen=True, kw_only=True)
class InputConfig:
    img_size: int = 224
    channels: tuple[str, ...] = ("dx", "dy", "mag")
    motion_scale: float = 1.0
    strain_scale: float = 0.05
    normalize: str = "fixed"

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        unknown = [c for c in self.channels if c not in MOTION_CHANNELS]
        if unknown or not self.channels:
            raise ValueError(f"scvit.channels must be a non-empty list of {MOTION_CHANNELS}, got {list(self.channels)}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"scvit.normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.motion_scale <= 0 or self.strain_scale <= 0:
            raise ValueError("scvit.motion_scale and scvit.strain_scale must be positive")
        if self.img_size < 8:
            raise ValueError(f"scvit.img_size {self.img_size} is too small")


def optical_strain(motion: np.ndarray) -> np.ndarray:
    """Optical strain magnitude of a displacement field [H, W, 2] (central differences, per pixel)."""
    u, v = motion[..., 0].astype(np.float64), motion[..., 1].astype(np.float64)
    u_y, u_x = np.gradient(u)
    v_y, v_x = np.gradient(v)
    return np.sqrt(u_x ** 2 + v_y ** 2 + 0.5 * (u_y + v_x) ** 2).astype(np.float32)


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    if array.shape[:2] == (size, size):
        return array.astype(np.float32, copy=False)
    out = cv2.resize(array.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    return out[..., None] if out.ndim == 2 else out


def _minmax(array: np.ndarray) -> np.ndarray:
    lo = array.min(axis=(0, 1), keepdims=True)
    span = array.max(axis=(0, 1), keepdims=True) - lo
    return np.where(span > 0, 2.0 * (array - lo) / np.where(span > 0, span, 1.0) - 1.0, 0.0).astype(np.float32)


def check_motion(motion: np.ndarray) -> np.ndarray:
    """``motion`` as float32 [H, W, 2]; ValueError (what is wrong) when it is not a finite displacement field."""
    motion = np.asarray(motion)
    if motion.dtype.kind not in "fiu":
        raise ValueError(f"expected a numeric displacement field, got dtype {motion.dtype}")
    motion = motion.astype(np.float32, copy=False)
    if motion.ndim != 3 or motion.shape[2] != 2 or min(motion.shape[:2]) < 1:
        raise ValueError(f"expected a displacement field [H, W, 2], got shape {motion.shape}")
    if not np.isfinite(motion).all():
        raise ValueError(f"the displacement field has {int((~np.isfinite(motion)).sum())} NaN or infinite value(s)")
    return motion


def motion_to_input(motion: np.ndarray, config: InputConfig) -> torch.Tensor:
    """Displacement field [H, W, 2] (crop pixels) -> input tensor [len(channels), img_size, img_size]."""
    motion = check_motion(motion)
    maps = {"dx": motion[..., 0], "dy": motion[..., 1], "mag": np.hypot(motion[..., 0], motion[..., 1])}
    if "strain" in config.channels:
        maps["strain"] = optical_strain(motion)
    scale = {"dx": config.motion_scale, "dy": config.motion_scale, "mag": config.motion_scale,
             "strain": config.strain_scale}
    stack = np.stack([maps[c] for c in config.channels], axis=-1)
    stack = _resize(stack, config.img_size)
    if config.normalize == "minmax":
        stack = _minmax(stack)
    else:
        stack = stack / np.asarray([scale[c] for c in config.channels], dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(stack.transpose(2, 0, 1)))


def image_to_input(image: np.ndarray, config: InputConfig) -> torch.Tensor:
    """Motion image uint8 [H, W, C] (RGB order) -> input tensor [C, img_size, img_size] in [-1, 1]."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit motion image, got {image.dtype}")
    stack = _resize(image.astype(np.float32), config.img_size)
    stack = _minmax(stack) if config.normalize == "minmax" else stack / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(stack.transpose(2, 0, 1).astype(np.float32)))


def hflip(batch: torch.Tensor, negate: list[int] | tuple[int, ...]) -> torch.Tensor:
    """Mirror inputs [B, C, H, W] left-right; the horizontal-motion channels ``negate`` change sign."""
    out = torch.flip(batch, dims=(3,))
    if negate:
        sign = torch.ones(batch.shape[1], dtype=batch.dtype, device=batch.device)
        sign[list(negate)] = -1.0
        out = out * sign.view(1, -1, 1, 1)
    return out
