"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017) for SCViT, and its overlay on a face crop.

For a CNN, Grad-CAM weighs feature map k by alpha_k = the spatial mean of d y^c / d A^k and keeps
ReLU(sum_k alpha_k A^k). For a ViT the "feature maps" are the D channels of the patch tokens, laid out
on the patch grid. Which tokens: SCViT classifies from the class token after the last block, so the
last block's *patch-token outputs* never reach the logits (their gradient is exactly zero); the tokens
that do are the last block's inputs, as its attention reads them. We therefore take the tokens after
the last block's first LayerNorm (``blocks[-1].norm1``), the layer the pytorch-grad-cam library
(Gildenblat et al.) uses for ViTs, and the map is ReLU(sum_k alpha_k A^k) over the patch tokens,
reshaped to the grid, normalised to [0, 1] and upsampled bilinearly to the crop.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from selfme.scvit.model import SCViT


def gradcam(model: SCViT, x: torch.Tensor, *, class_index: int | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM of one input ``x`` [1, C, S, S] for ``class_index`` (default: the predicted class).

    Returns the map on the patch grid [rows, cols] in [0, 1] (all zeros when no patch speaks for the
    class) and the class it explains."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"gradcam takes one input [1, C, H, W], got {list(x.shape)}")
    layer = model.backbone.blocks[-1].norm1
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        captured["tokens"] = output

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x)
            index = int(logits[0].argmax()) if class_index is None else int(class_index)
            (grad,) = torch.autograd.grad(logits[0, index], captured["tokens"])
    finally:
        handle.remove()
        model.train(was_training)
    prefix = int(model.backbone.num_prefix_tokens)
    tokens = captured["tokens"][0, prefix:].detach()       # [N, D]
    weights = grad[0, prefix:].mean(dim=0)                  # alpha_k: mean gradient over the patches
    cam = torch.relu(tokens @ weights).reshape(model.grid)  # ReLU(sum_k alpha_k A^k) on the grid
    top = float(cam.max())
    cam = cam / top if top > 0 else cam
    return cam.float().cpu().numpy(), index


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The grid map resized bilinearly to (height, width), kept in [0, 1]."""
    h, w = size
    return np.clip(cv2.resize(cam.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def overlay(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """The map (any size; upsampled to the image) as a JET heat map blended over a uint8 RGB or grey
    image: ``(1 - alpha) * image + alpha * heat``."""
    rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]
    heat = upsample(cam, rgb.shape[:2])
    colour = cv2.cvtColor(cv2.applyColorMap(np.uint8(np.round(heat * 255)), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
