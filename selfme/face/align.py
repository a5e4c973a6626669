"""Similarity alignment from the eye centres, and warping of frames and motion fields.

A crop is defined by one 2x3 similarity matrix ``M`` (OpenCV convention: a source pixel ``x`` lands
at ``M @ [x, 1]`` in the crop; pixel centres sit at integer coordinates). ``M`` is computed once per
clip from the onset frame's eye centres and then applied unchanged to every frame of the clip, so head
position never turns into apparent motion.

Target eye positions are fractions of the output size: the eyes sit symmetrically about the vertical
centre line, ``eye_distance * size`` apart, on the line ``y = eye_y * size``. A fraction ``f`` maps to
the pixel coordinate ``f * size - 0.5`` (0 is the left/top image edge, 0.5 the exact centre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

BORDERS = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT,
           "reflect": cv2.BORDER_REFLECT_101}
#: Below this scale a frame is first shrunk with pixel-area averaging (no aliasing), then warped.
PRESCALE_BELOW = 0.75


@dataclass(frozen=True, kw_only=True)
class AlignTarget:
    """Where the eyes go in a ``size`` x ``size`` crop (fractions of the size, see module docstring)."""

    size: int
    eye_distance: float = 0.34
    eye_y: float = 0.37

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"crop size must be at least 8 pixels, not {self.size}")
        if not 0.05 <= self.eye_distance <= 0.9:
            raise ValueError(f"eye_distance is a fraction of the crop size in [0.05, 0.9], not {self.eye_distance}")
        if not 0.05 <= self.eye_y <= 0.95:
            raise ValueError(f"eye_y is a fraction of the crop size in [0.05, 0.95], not {self.eye_y}")

    def eye_positions(self) -> np.ndarray:
        """Pixel coordinates [[x, y] image-left eye, [x, y] image-right eye] in the crop."""
        half = self.eye_distance / 2.0
        y = self.eye_y * self.size - 0.5
        return np.array([[(0.5 - half) * self.size - 0.5, y],
                         [(0.5 + half) * self.size - 0.5, y]], dtype=np.float64)


def similarity_from_eyes(src_eyes: np.ndarray, dst_eyes: np.ndarray) -> np.ndarray:
    """The unique similarity (rotation, uniform scale, translation) taking two source points exactly
    onto two destination points, as a 2x3 matrix (complex-number form ``z' = a z + b``)."""
    src = np.asarray(src_eyes, dtype=np.float64).reshape(2, 2)
    dst = np.asarray(dst_eyes, dtype=np.float64).reshape(2, 2)
    s0, s1 = complex(*src[0]), complex(*src[1])
    d0, d1 = complex(*dst[0]), complex(*dst[1])
    if abs(s1 - s0) < 1e-6:
        raise ValueError(f"the two eye centres coincide ({src[0].tolist()}): no alignment is possible")
    a = (d1 - d0) / (s1 - s0)
    b = d0 - a * s0
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=np.float64)


def align_eyes(src_eyes: np.ndarray, target: AlignTarget) -> np.ndarray:
    """The 2x3 crop transform that puts the source eye centres onto ``target``'s eye positions."""
    return similarity_from_eyes(src_eyes, target.eye_positions())


def similarity_params(matrix: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(scale, rotation in degrees counter-clockwise in image coordinates, translation) of a similarity."""
    m = np.asarray(matrix, dtype=np.float64)
    scale = math.hypot(m[0, 0], m[1, 0])
    angle = math.degrees(math.atan2(m[1, 0], m[0, 0]))
    return scale, angle, m[:, 2].copy()


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse 2x3 affine transform."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine transform to [N, 2] points."""
    m = np.asarray(matrix, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def eye_line_angle(eyes: np.ndarray) -> float:
    """Angle of the line from the image-left to the image-right eye, in degrees (0 = horizontal)."""
    e = np.asarray(eyes, dtype=np.float64).reshape(2, 2)
    return math.degrees(math.atan2(e[1, 1] - e[0, 1], e[1, 0] - e[0, 0]))


def _prescaled(array: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrink ``array`` by area averaging when ``matrix`` scales down a lot; return it and the matrix
    that maps the shrunk array onto the same crop (so the result is the same geometry, without aliasing)."""
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if scale >= PRESCALE_BELOW:
        return array, matrix
    h, w = array.shape[:2]
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    fx, fy = new_w / w, new_h / h
    small = cv2.resize(array, (new_w, new_h), interpolation=cv2.INTER_AREA)
    if array.ndim == 3 and small.ndim == 2:
        small = small[:, :, None]
    # A shrunk pixel centre x_s sits at x = (x_s + 0.5) / fx - 0.5 in the original frame.
    undo = np.array([[1.0 / fx, 0.0, 0.5 / fx - 0.5], [0.0, 1.0 / fy, 0.5 / fy - 0.5], [0.0, 0.0, 1.0]])
    return small, matrix @ undo


def warp(array: np.ndarray, matrix: np.ndarray, size: int, *, border: str = "replicate",
         interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resample ``array`` (image [H, W] / [H, W, C], or a float field) into the ``size`` x ``size`` crop
    ``dst(x') = src(M^-1 x')``; strong downscaling goes through area averaging first."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {sorted(BORDERS)}, not {border!r}")
    src, m = _prescaled(array, np.asarray(matrix, dtype=np.float64))
    out = cv2.warpAffine(src, m, (size, size), flags=interpolation, borderMode=BORDERS[border],
                         borderValue=0)
    if array.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def warp_displacement(field: np.ndarray, matrix: np.ndarray, size: int, *,
                      border: str = "replicate") -> np.ndarray:
    """Map a displacement field from source pixels into crop pixels: ``F'(x') = A F(T^-1 x')``.

    ``field`` is float [H, W, 2] (dx, dy) with ``onset(x) ~ apex(x + F(x))`` (OpenCV flow convention);
    ``T`` is the crop transform and ``A`` its 2x2 linear part, so the result keeps that convention for
    the cropped onset and apex frames.
    """
    field = np.asarray(field, dtype=np.float32)
    if field.ndim != 3 or field.shape[2] != 2:
        raise ValueError(f"a displacement field is [H, W, 2], not {list(field.shape)}")
    sampled = warp(field, matrix, size, border=border)
    linear = np.asarray(matrix, dtype=np.float64)[:, :2]
    mapped = sampled.reshape(-1, 2).astype(np.float64) @ linear.T
    return mapped.reshape(size, size, 2).astype(np.float32)
