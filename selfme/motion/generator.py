"""The occlusion-aware generator: reconstructs the target frame from the source frame and the dense motion.

Encoder features of the source are warped by the dense motion of F_dense (Eq. 5), multiplied by the
occlusion map, passed through a residual bottleneck and decoded to an image (sigmoid output in [0, 1]):
First Order Motion Model's generator, the paper's.

``image_skip=True`` adds an image-level path: the output is the occlusion-weighted blend of the source
image warped by the same dense motion and the decoded image, ``occ * deformed + (1 - occ) * decoded``
(the occlusion map bilinearly upsampled to full resolution; occ = 1 where the source is visible), the
final step of the Thin-Plate Spline Motion Model's inpainting network (Zhao and Zhang, CVPR 2022,
``modules/inpainting_network.py``). Visible pixels are then copied from the source at full resolution
instead of passing through the encoder-decoder bottleneck, whose blur can exceed a micro-expression's
whole change (demo profile, 64-px crops and a random-VGG loss: an L1 of about 0.04 against the change's
0.016); the decoder only fills what the occlusion map marks as not visible. Nothing else changes:
keypoints (Eq. 1), dense motion (Eq. 2-5), losses (Eq. 6-8) and the parameters (the same state dict
loads with either setting).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfme.motion.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from selfme.motion.dense_motion import DenseMotionNetwork


#: ``warp_padding``: what a warp samples outside the source. ``zeros`` (First Order Motion Model's): black,
#: so any outward motion at the crop border darkens the reconstruction, and the learner is pushed to keep
#: the border still; ``border`` (a departure): the edge pixel repeated, nearly right for the sub-pixel
#: motions of a micro-expression clip.
WARP_PADDINGS = ("zeros", "border")


def warp(inp: torch.Tensor, deformation: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Backward-warp [B, C, H, W] by a normalised grid [B, h, w, 2], resized to H x W if needed;
    ``padding``: grid_sample's padding_mode (:data:`WARP_PADDINGS`)."""
    h, w = inp.shape[2:]
    if deformation.shape[1:3] != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=True).permute(0, 2, 3, 1)
    return F.grid_sample(inp, deformation.to(inp.dtype), padding_mode=padding, align_corners=True)


class OcclusionAwareGenerator(nn.Module):
    """(source [B, C, H, W], keypoints [B, K, 2] x 2) -> reconstruction of the target [B, C, H, W].

    ``image_skip`` (needs ``estimate_occlusion_map``): blend the warped source image with the decoded
    image by the occlusion map (see the module docstring); False is First Order Motion Model's generator.
    ``warp_padding`` (:data:`WARP_PADDINGS`): every warp's padding, the dense motion network's included.
    """

    def __init__(self, *, num_kp: int, num_channels: int = 3, block_expansion: int = 64, max_features: int = 512,
                 num_down_blocks: int = 2, num_bottleneck_blocks: int = 6, estimate_occlusion_map: bool = True,
                 image_skip: bool = False, warp_padding: str = "zeros",
                 dense_motion_params: dict[str, Any] | None = None) -> None:
        super().__init__()
        if image_skip and not estimate_occlusion_map:
            raise ValueError("image_skip blends by the occlusion map: it needs estimate_occlusion_map: true")
        if warp_padding not in WARP_PADDINGS:
            raise ValueError(f"warp_padding must be one of {WARP_PADDINGS}, got {warp_padding!r}")
        self.image_skip = bool(image_skip)
        self.warp_padding = warp_padding
        self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, num_channels=num_channels,
                                                       estimate_occlusion_map=estimate_occlusion_map,
                                                       padding=warp_padding, **(dense_motion_params or {}))
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(min(max_features, block_expansion * 2 ** i), min(max_features, block_expansion * 2 ** (i + 1)))
            for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(min(max_features, block_expansion * 2 ** (num_down_blocks - i)),
                      min(max_features, block_expansion * 2 ** (num_down_blocks - i - 1)))
            for i in range(num_down_blocks))
        bottleneck_features = min(max_features, block_expansion * 2 ** num_down_blocks)
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(bottleneck_features))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)
        self.num_down_blocks = num_down_blocks

    def encode(self, source: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, C', H / 2^n, W / 2^n]."""
        out = self.first(source)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Bottleneck and decoder: [B, C', H / 2^n, W / 2^n] -> [B, C, H, W] in [0, 1]."""
        out = self.bottleneck(features)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))

    def forward(self, source: torch.Tensor, *, kp_source: torch.Tensor, kp_target: torch.Tensor,
                gamma: float = 1.0, jacobian_source: torch.Tensor | None = None,
                jacobian_target: torch.Tensor | None = None,
                target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """(``target``: the target frame, for the dense motion's ``residual_flow``) -> dense motion outputs
        (mask, deformation, displacement, occlusion_map, sparse_deformed) plus ``deformed`` (the source
        warped by the dense motion) and ``prediction`` (the reconstruction); with ``image_skip`` also
        ``decoded`` (the decoder's image, which fills the occluded part)."""
        factor = 2 ** self.num_down_blocks
        if source.shape[-1] % factor or source.shape[-2] % factor:
            raise ValueError(f"image sides must be divisible by {factor}, got {tuple(source.shape[-2:])}")
        out = dict(self.dense_motion_network(source, kp_source=kp_source, kp_target=kp_target, gamma=gamma,
                                             jacobian_source=jacobian_source, jacobian_target=jacobian_target,
                                             target=target))
        features = warp(self.encode(source), out["deformation"], self.warp_padding)
        occlusion = out.get("occlusion_map")
        if occlusion is not None:
            if occlusion.shape[2:] != features.shape[2:]:
                occlusion = F.interpolate(occlusion, size=features.shape[2:], mode="bilinear", align_corners=True)
            features = features * occlusion.to(features.dtype)
        out["deformed"] = warp(source, out["deformation"], self.warp_padding)
        decoded = self.decode(features)
        if not self.image_skip:
            out["prediction"] = decoded
            return out
        # The blend in float32 (under bf16 autocast too): copied pixels keep the source's precision.
        visible = out["occlusion_map"].float()
        if visible.shape[2:] != source.shape[2:]:
            visible = F.interpolate(visible, size=source.shape[2:], mode="bilinear", align_corners=True)
        out["decoded"] = decoded
        out["prediction"] = visible * out["deformed"].float() + (1 - visible) * decoded.float()
        return out
