"""Smooth displacement fields built from Gaussian bumps, and their sampling and inversion."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def bump_field(points: np.ndarray, centres: np.ndarray, vectors: np.ndarray,
               sigmas: np.ndarray | Sequence[float]) -> np.ndarray:
    """Sum of Gaussian-weighted displacement bumps: D(p) = sum_k v_k exp(-|p - c_k|^2 / (2 s_k^2)).

    ``points`` [..., 2] (x, y); ``centres`` and ``vectors`` [K, 2]; ``sigmas`` [K]. Returns [..., 2]
    float32. Bumps farther than 4 sigma contribute nothing (below 3.4e-4 of their peak).
    """
    points = np.asarray(points, dtype=np.float32)
    centres = np.asarray(centres, dtype=np.float32).reshape(-1, 2)
    vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, 2)
    sigmas = np.asarray(sigmas, dtype=np.float32).reshape(-1)
    out = np.zeros(points.shape, dtype=np.float32)
    px, py = points[..., 0], points[..., 1]
    for (cx, cy), (vx, vy), sigma in zip(centres, vectors, sigmas):
        d2 = (px - cx) ** 2 + (py - cy) ** 2
        weight = np.exp(-d2 / (2.0 * sigma * sigma))
        weight[d2 > (4.0 * sigma) ** 2] = 0.0
        out[..., 0] += vx * weight
        out[..., 1] += vy * weight
    return out


def pixel_grid(width: int, height: int) -> np.ndarray:
    """[H, W, 2] float32 grid of pixel centres (x, y) in OpenCV's convention (pixel i at i)."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.stack([xs, ys], axis=-1)


def sample_field(field: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinearly sample a [H, W, C] float32 field at [h, w, 2] coordinates (border values extended)."""
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    return cv2.remap(np.ascontiguousarray(field, dtype=np.float32), coords[..., 0], coords[..., 1],
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def invert_displacement(target: np.ndarray, field: np.ndarray, *, iterations: int = 6) -> np.ndarray:
    """Solve p + field(p) = target for p by fixed-point iteration p <- target - field(p).

    ``field`` is a dense [H, W, 2] displacement; ``target`` [h, w, 2] coordinates. The iteration
    contracts when the field's Jacobian norm is below 1 (our fields keep it under 0.5, so six
    iterations leave an error below 0.5^6 of the displacement).
    """
    p = target.astype(np.float32, copy=True)
    for _ in range(iterations):
        p = target - sample_field(field, p)
    return p


def max_jacobian_norm(field: np.ndarray) -> float:
    """Largest Frobenius norm of the finite-difference Jacobian of a [H, W, 2] displacement field."""
    dudy, dudx = np.gradient(field[..., 0])
    dvdy, dvdx = np.gradient(field[..., 1])
    return float(np.sqrt(dudx ** 2 + dudy ** 2 + dvdx ** 2 + dvdy ** 2).max())
