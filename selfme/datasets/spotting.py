"""Apex spotting for datasets without an apex annotation (SMIC-HS) or with an unusable one.

The apex is the frame of peak motion relative to the onset: for every frame, the mean magnitude of
Farneback optical flow from the onset frame (grey, downscaled, blurred), smoothed over three frames;
the apex is its arg-max. This is the rule several MER toolkits use for SMIC; ``midpoint`` is the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from selfme.io import read_image


def _prepare(path: Path, width: int) -> np.ndarray:
    gray = read_image(path, gray=True)
    scale = width / gray.shape[1]
    small = cv2.resize(gray, (width, max(8, round(gray.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (5, 5), 1.0)


def motion_profile(frames: Sequence[str | Path], *, width: int = 128) -> np.ndarray:
    """Mean Farneback flow magnitude (pixels at ``width``) from the first frame to every frame."""
    onset = _prepare(Path(frames[0]), width)
    profile = np.zeros(len(frames), dtype=np.float64)
    for i, path in enumerate(frames[1:], start=1):
        frame = _prepare(Path(path), width)
        if frame.shape != onset.shape:
            raise ValueError(f"frame size differs from the onset frame's: {path}")
        flow = cv2.calcOpticalFlowFarneback(onset, frame, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        profile[i] = float(np.linalg.norm(flow, axis=2).mean())
    return profile


def spot_apex(frames: Sequence[str | Path], *, width: int = 128) -> int:
    """Index (into ``frames``, onset first) of the spotted apex: arg-max of the smoothed motion profile."""
    if len(frames) < 2:
        raise ValueError("apex spotting needs at least two frames")
    profile = motion_profile(frames, width=width)
    smooth = np.convolve(np.pad(profile, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")
    smooth[0] = -np.inf  # the onset itself is never the apex
    return int(np.argmax(smooth))


def midpoint(onset: int, offset: int) -> int:
    return (int(onset) + int(offset)) // 2
