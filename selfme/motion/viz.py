"""Pictures of the motion learner: flow colour coding and the per-epoch sample panel."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from selfme.motion.dense_motion import displacement_to_opencv_flow

_KP_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
               (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def flow_to_color(flow: np.ndarray, *, max_magnitude: float | None = None) -> np.ndarray:
    """[H, W, 2] (dx, dy) -> uint8 RGB [H, W, 3]: hue = direction, brightness = magnitude (cv2 HSV)."""
    magnitude, angle = cv2.cartToPolar(flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32))
    top = max_magnitude if max_magnitude else float(magnitude.max())
    hsv = np.zeros((*flow.shape[:2], 3), dtype=np.uint8)
    hsv[..., 0] = (angle * 180.0 / np.pi / 2.0).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(magnitude / max(top, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def _draw_keypoints(image: np.ndarray, kp: torch.Tensor) -> np.ndarray:
    out = image.copy()
    h, w = out.shape[:2]
    for k, (x, y) in enumerate(kp.detach().float().cpu().numpy()):
        centre = (int(round((x + 1) / 2 * (w - 1))), int(round((y + 1) / 2 * (h - 1))))
        cv2.circle(out, centre, max(2, w // 64), _KP_COLOURS[k % len(_KP_COLOURS)], -1, lineType=cv2.LINE_AA)
    return out


def sample_panel(source: torch.Tensor, target: torch.Tensor, out: dict[str, torch.Tensor], *,
                 min_side: int = 192) -> np.ndarray:
    """One row: source (with keypoints), target (with keypoints), reconstruction, dense motion colour.

    Tensors are one sample: source/target [3, H, W]; ``out`` a MotionLearner output for a batch whose
    first element is this sample. Small crops are enlarged (nearest) to ``min_side`` for viewing.
    """
    h, w = source.shape[1:]
    flow = displacement_to_opencv_flow(out["displacement"][:1], size=(h, w))[0]
    panels = [_draw_keypoints(_to_uint8(source), out["kp_source"][0]),
              _draw_keypoints(_to_uint8(target), out["kp_target"][0]),
              _to_uint8(out["prediction"][0]),
              flow_to_color(flow)]
    row = np.concatenate(panels, axis=1)
    if h < min_side:
        factor = int(np.ceil(min_side / h))
        row = cv2.resize(row, (row.shape[1] * factor, row.shape[0] * factor), interpolation=cv2.INTER_NEAREST)
    magnitude = float(np.linalg.norm(flow, axis=-1).max())
    cv2.putText(row, f"max |d| {magnitude:.2f}px", (row.shape[1] * 3 // 4 + 4, 14), cv2.FONT_HERSHEY_SIMPLEX,
                0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return row
