"""A convolutional patch embedding E for SCViT on small motion images (``scvit.stem: conv``).

ViT's E cuts the image into p x p patches and projects each linearly (one p x p convolution of stride
p). On 28 x 28 motion images trained from scratch, a small convolutional stem in its place (Xiao et
al., 2021, "Early convolutions help transformers see better") gives the tokens local motion features
before attention: a 3 x 3 convolution of stride 2 with ``channels`` filters and GELU, then a
(p/2) x (p/2) convolution of stride p/2 to the embedding width. The token grid is the same as the
linear E's (28 / 4 = 7 x 7 for p = 4), so the SC regions stay the quadrants of the patch grid, read
right after E as in the paper.
"""

from __future__ import annotations

from torch import nn
from timm.layers import PatchEmbed

STEMS = ("linear", "conv")


class ConvStem(nn.Sequential):
    """Conv 3x3 stride 2 (``in_channels`` -> ``channels``), GELU, conv (p/2) stride p/2 (-> ``out_channels``)."""

    def __init__(self, *, in_channels: int, channels: int, out_channels: int, patch_size: int,
                 bias: bool = True) -> None:
        if patch_size < 2 or patch_size % 2:
            raise ValueError(f"the conv stem needs an even patch size >= 2, got {patch_size}")
        half = patch_size // 2
        super().__init__(nn.Conv2d(in_channels, channels, 3, stride=2, padding=1), nn.GELU(),
                         nn.Conv2d(channels, out_channels, half, stride=half, bias=bias))
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)


class ConvStemEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` with ``proj`` replaced by a ``ConvStem`` (same grid, same output [B, N, D])."""

    def __init__(self, *, stem_channels: int, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 768, bias: bool = True, **kwargs) -> None:
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                         bias=bias, **kwargs)
        if self.img_size is not None and any(s % patch_size for s in self.img_size):
            raise ValueError(f"the conv stem needs img_size divisible by patch_size ({img_size}, {patch_size})")
        self.proj = ConvStem(in_channels=in_chans, channels=stem_channels, out_channels=embed_dim,
                             patch_size=patch_size, bias=bias)


def conv_stem_layer(stem_channels: int):
    """An ``embed_layer`` for timm's VisionTransformer building a ``ConvStemEmbed``."""
    if stem_channels < 1:
        raise ValueError(f"scvit.stem_channels must be >= 1, got {stem_channels}")

    def build(**kwargs) -> ConvStemEmbed:
        return ConvStemEmbed(stem_channels=stem_channels, **kwargs)

    return build
