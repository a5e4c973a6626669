"""F_kp, the keypoint detector (Sec. 3.2, Eq. 1): an hourglass, K softmax heatmaps, their expected coordinates.

SelfME's motion is zeroth order (keypoint displacements only), so unlike First Order Motion Model there
is no Jacobian head; a FOMM checkpoint's ``jacobian`` weights are simply not loaded.
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
                 scale_factor: float = 0.25, pad: int = 0) -> None:
        super().__init__()
        self.predictor = Hourglass(block_expansion=block_expansion, in_features=num_channels,
                                   max_features=max_features, num_blocks=num_blocks)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=7, padding=pad)
        self.num_kp = num_kp
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def heatmaps(self, image: torch.Tensor) -> torch.Tensor:
        """Softmax heatmaps with temperature: [B, C, H, W] -> [B, K, h, w], each map summing to 1."""
        x = self.down(image) if self.scale_factor != 1 else image  # [B, C, H*s, W*s]
        logits = self.kp(self.predictor(x)).float()  # [B, K, h, w]
        b, k, h, w = logits.shape
        weights = F.softmax(logits.view(b, k, h * w) / self.temperature, dim=2)
        return weights.view(b, k, h, w)

    @staticmethod
    def heatmap_to_keypoints(heatmap: torch.Tensor) -> torch.Tensor:
        """Eq. 1: z_k = sum_p H_k(p) * p, the expectation of the coordinate grid: [B, K, h, w] -> [B, K, 2]."""
        grid = make_coordinate_grid(heatmap.shape[2:], dtype=heatmap.dtype, device=heatmap.device)
        return (heatmap.unsqueeze(-1) * grid[None, None]).sum(dim=(2, 3))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.heatmap_to_keypoints(self.heatmaps(image))  # [B, K, 2]
