"""Building blocks of the motion learner (after First Order Motion Model's ``modules/util.py``).

Module and attribute names mirror First Order Motion Model (FOMM) so that its public vox-256 checkpoint
loads into our networks key for key (see :func:`selfme.motion.model.load_weights`).

Coordinates follow FOMM: a grid in [-1, 1] with -1 on the centre of the first pixel and +1 on the centre
of the last (``align_corners=True`` in ``grid_sample`` terms), ``[..., 0]`` = x, ``[..., 1]`` = y.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_coordinate_grid(spatial_size: tuple[int, int], *, dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised pixel-centre grid [H, W, 2] (x, y) in [-1, 1] (the lattice Eq. 1 takes expectations on)."""
    h, w = int(spatial_size[0]), int(spatial_size[1])
    x = torch.linspace(-1.0, 1.0, w, dtype=dtype, device=device) if w > 1 else torch.zeros(1, dtype=dtype,
                                                                                            device=device)
    y = torch.linspace(-1.0, 1.0, h, dtype=dtype, device=device) if h > 1 else torch.zeros(1, dtype=dtype,
                                                                                            device=device)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def kp2gaussian(kp: torch.Tensor, spatial_size: tuple[int, int], kp_variance: float) -> torch.Tensor:
    """Gaussian heatmaps around keypoints (the terms of Eq. 3).

    kp: [B, K, 2] normalised (x, y)  ->  [B, K, H, W], exp(-|p - z_k|^2 / (2 * kp_variance)).
    """
    grid = make_coordinate_grid(spatial_size, dtype=kp.dtype, device=kp.device)  # [H, W, 2]
    diff = grid[None, None] - kp[:, :, None, None, :]  # [B, K, H, W, 2]
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / kp_variance)


class ResBlock2d(nn.Module):
    """Pre-activation residual block that keeps the resolution (BN-ReLU-conv twice, plus the input)."""

    def __init__(self, in_features: int, *, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(in_features, affine=True)
        self.norm2 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C, H, W]
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class UpBlock2d(nn.Module):
    """Nearest x2 upsampling, conv, BN, ReLU: [B, Cin, H, W] -> [B, Cout, 2H, 2W]."""

    def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.relu(self.norm(self.conv(out)))


class DownBlock2d(nn.Module):
    """Conv, BN, ReLU, 2x2 average pooling: [B, Cin, H, W] -> [B, Cout, H/2, W/2]."""

    def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class SameBlock2d(nn.Module):
    """Conv, BN, ReLU at the same resolution: [B, Cin, H, W] -> [B, Cout, H, W]."""

    def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


def _features(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * (2 ** level))


class Encoder(nn.Module):
    """Hourglass encoder: ``num_blocks`` DownBlock2d; returns the input and every block's output."""

    def __init__(self, *, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else _features(block_expansion, max_features, i),
                        _features(block_expansion, max_features, i + 1))
            for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]  # [B, Cin, H, W], then [B, C_i, H / 2^i, W / 2^i]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: UpBlock2d with skip connections; output has ``block_expansion + in_features``."""

    def __init__(self, *, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            in_filters = (1 if i == num_blocks - 1 else 2) * _features(block_expansion, max_features, i + 1)
            blocks.append(UpBlock2d(in_filters, _features(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        x = list(x)
        out = x.pop()
        for block in self.up_blocks:
            out = block(out)
            out = torch.cat([out, x.pop()], dim=1)
        return out  # [B, block_expansion + in_features, H, W]


class Hourglass(nn.Module):
    """U-Net style hourglass: [B, in_features, H, W] -> [B, out_filters, H, W] (H, W divisible by 2^blocks)."""

    def __init__(self, *, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion=block_expansion, in_features=in_features, num_blocks=num_blocks,
                               max_features=max_features)
        self.decoder = Decoder(block_expansion=block_expansion, in_features=in_features, num_blocks=num_blocks,
                               max_features=max_features)
        self.out_filters = self.decoder.out_filters
        self.num_blocks = num_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2 ** self.num_blocks
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"hourglass with {self.num_blocks} blocks needs sides divisible by {factor}, "
                             f"got {tuple(x.shape[-2:])}")
        return self.decoder(self.encoder(x))


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then subsampling by an integer factor 1/scale: [B, C, H, W] -> [B, C, ceil(H*s), ceil(W*s)].

    The blur's sigma is (1/scale - 1) / 2 as in FOMM; scale 1 is the identity.
    """

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        inv = 1.0 / scale
        if scale <= 0 or scale > 1 or abs(inv - round(inv)) > 1e-6:
            raise ValueError(f"scale must be 1/n for an integer n, got {scale}")
        sigma = (inv - 1) / 2
        kernel_size = 2 * round(sigma * 4) + 1
        self.ka = kernel_size // 2
        self.kb = self.ka - 1 if kernel_size % 2 == 0 else self.ka
        if sigma > 0:
            coords = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
            g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
            kernel = g[:, None] * g[None, :]
            kernel = kernel / kernel.sum()
        else:
            kernel = torch.ones(1, 1)
        self.register_buffer("weight", kernel.view(1, 1, kernel_size, kernel_size).repeat(channels, 1, 1, 1))
        self.groups = channels
        self.scale = scale
        self.int_inv_scale = int(round(inv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, weight=self.weight.to(out.dtype), groups=self.groups)
        return out[:, :, ::self.int_inv_scale, ::self.int_inv_scale]
