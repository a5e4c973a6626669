"""F_kp, the keypoint detector (Sec. 3.2, Eq. 1): an hourglass, K softmax heatmaps, their expected coordinates.

SelfME's motion is zeroth order (keypoint displacements only, the paper's Eq. 2): by default there is
no Jacobian head and a FOMM checkpoint's ``jacobian`` weights are not loaded. ``estimate_jacobian: true``
(a departure, ``motion.kp_detector.estimate_jacobian``) adds First Order Motion Model's head: a 2x2 matrix
J_k per keypoint, the heatmap-weighted mean of a 4-channel map initialised to the identity, so the local
motions become affine near each keypoint (see :mod:`selfme.motion.dense_motion`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfme.motion.blocks import AntiAliasInterpolation2d, Hourglass, make_coordinate_grid


class KPDetector(nn.Module):
    """Image [B, C, H, W] in [0, 1] -> keypoints [B, K, 2] in normalised (x, y) coordinates.

    ``scale_factor`` shrinks the input before the hourglass (0.25 in vox-256: a 256 crop becomes 64x64);
    ``pad`` is the padding of the final 7x7 heatmap convolution (FOMM's vox-256 uses 0, which trims 3
    pixels per side of the heatmap; 3 keeps the heatmap the size of the hourglass output).
    """

    def __init__(self, *, num_kp: int, num_channels: int = 3, block_expansion: int = 32,
                 max_features: int = 1024, num_blocks: int = 5, temperature: float = 0.1,
                 scale_factor: float = 0.25, pad: int = 0, estimate_jacobian: bool = False) -> None:
        super().__init__()
        self.predictor = Hourglass(block_expansion=block_expansion, in_features=num_channels,
                                   max_features=max_features, num_blocks=num_blocks)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=7, padding=pad)
        self.jacobian = None
        if estimate_jacobian:  # FOMM: zero weights, identity bias, so training starts zeroth order
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * num_kp, kernel_size=7, padding=pad)
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0] * num_kp))
        self.num_kp = num_kp
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def _features(self, image: torch.Tensor) -> torch.Tensor:
        x = self.down(image) if self.scale_factor != 1 else image  # [B, C, H*s, W*s]
        return self.predictor(x)

    def _softmax(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.kp(features).float()  # [B, K, h, w]
        b, k, h, w = logits.shape
        weights = F.softmax(logits.view(b, k, h * w) / self.temperature, dim=2)
        return weights.view(b, k, h, w)

    def heatmaps(self, image: torch.Tensor) -> torch.Tensor:
        """Softmax heatmaps with temperature: [B, C, H, W] -> [B, K, h, w], each map summing to 1."""
        return self._softmax(self._features(image))

    @staticmethod
    def heatmap_to_keypoints(heatmap: torch.Tensor) -> torch.Tensor:
        """Eq. 1: z_k = sum_p H_k(p) * p, the expectation of the coordinate grid: [B, K, h, w] -> [B, K, 2]."""
        grid = make_coordinate_grid(heatmap.shape[2:], dtype=heatmap.dtype, device=heatmap.device)
        return (heatmap.unsqueeze(-1) * grid[None, None]).sum(dim=(2, 3))

    def detect(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> keypoints [B, K, 2] and, with the Jacobian head, J_k = sum_p H_k(p) M_k(p) [B, K, 2, 2] (else None)."""
        features = self._features(image)
        heatmap = self._softmax(features)
        keypoints = self.heatmap_to_keypoints(heatmap)
        if self.jacobian is None:
            return keypoints, None
        maps = self.jacobian(features).float()  # [B, 4K, h, w]
        b, k, h, w = heatmap.shape
        if maps.shape[2:] != heatmap.shape[2:]:
            raise ValueError(f"jacobian map {tuple(maps.shape[2:])} differs from the heatmap {(h, w)}")
        jacobian = (heatmap.unsqueeze(2) * maps.view(b, k, 4, h, w)).sum(dim=(3, 4))
        return keypoints, jacobian.view(b, k, 2, 2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.detect(image)[0]  # [B, K, 2]
