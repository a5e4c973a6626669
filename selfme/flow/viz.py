"""Flow colouring (HSV colour wheel) and side-by-side figures of motion fields."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """[H, W, 2] (dx, dy) -> uint8 RGB [H, W, 3]: hue = direction (0 deg = +x, red), value = magnitude
    relative to ``max_magnitude`` (default: the field's maximum), full saturation."""
    flow = np.asarray(flow, dtype=np.float32)
    mag, ang = cv2.cartToPolar(np.ascontiguousarray(flow[..., 0]), np.ascontiguousarray(flow[..., 1]),
                               angleInDegrees=True)
    top = float(max_magnitude) if max_magnitude else float(mag.max())
    hsv = np.zeros((*flow.shape[:2], 3), dtype=np.uint8)
    hsv[..., 0] = np.round(ang / 2.0).astype(np.uint8) % 180  # OpenCV hue: 0..179
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag / max(top, 1e-9) * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def color_wheel(size: int = 64) -> np.ndarray:
    """The key: a disc whose colour at offset (dx, dy) from the centre is that flow's colour."""
    r = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    flow = np.stack([xs - r, ys - r], axis=-1)
    rgb = flow_to_rgb(flow, max_magnitude=r)
    rgb[np.hypot(xs - r, ys - r) > r] = 255
    return rgb


def _tile(image: np.ndarray, size: int) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST if image.shape[0] < size
                      else cv2.INTER_AREA)


def motion_figure(panels: Sequence[tuple[str, np.ndarray]], *, tile: int = 192,
                  max_magnitude: float | None = None) -> np.ndarray:
    """A labelled strip of tiles: images ([H, W] / [H, W, 3] uint8) as they are, flows ([H, W, 2]) coloured
    on one shared scale (default: the largest magnitude among them), plus the colour-wheel key."""
    flows = [p for _, p in panels if p.ndim == 3 and p.shape[2] == 2]
    if max_magnitude is None and flows:
        max_magnitude = max(float(np.hypot(f[..., 0], f[..., 1]).max()) for f in flows) or 1.0
    tiles = []
    for label, panel in panels + [(f"key: {max_magnitude or 0:.2f} px", None)]:
        if panel is None:
            img = np.full((tile, tile, 3), 255, np.uint8)
            wheel = color_wheel(tile // 2)
            o = tile // 4
            img[o:o + wheel.shape[0], o:o + wheel.shape[1]] = wheel
        elif panel.ndim == 3 and panel.shape[2] == 2:
            img = _tile(flow_to_rgb(panel, max_magnitude), tile)
        else:
            img = _tile(panel, tile)
        band = np.full((22, tile, 3), 255, np.uint8)
        cv2.putText(band, label[:28], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([band, img]))
    return np.hstack(tiles)
