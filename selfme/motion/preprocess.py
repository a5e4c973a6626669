"""The motion learner's input form: how a frame becomes the tensor the learner sees, the same in training
(selfme.motion.data) and at extraction (selfme.extract.engine)."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def to_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [H, W] or [H, W, 3] -> float [3, size, size] in [0, 1] (centre square crop, area resize)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    h, w = image.shape[:2]
    if h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image = image[top:top + side, left:left + side]
    if image.shape[0] != size:
        interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interp)
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
