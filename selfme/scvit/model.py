"""SCViT (Sec. 3.3): a timm Vision Transformer that classifies a motion and exposes the face-region
embeddings the symmetric contrastive loss needs.

ViT (Dosovitskiy et al.): the input is cut into N patches x_p^1..x_p^N, each linearly projected by E,
z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos, then L Transformer blocks and a classification head on
the class token. The SC loss reads the patch embeddings x_p E right after E (``sc_features:
patch_embed``, the paper's choice) or the patch tokens after the last block and its norm
(``last_block``), pooled over the four face quadrants.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from selfme.scvit.regions import region_embeddings

SC_FEATURES = ("patch_embed", "last_block")


class Features(NamedTuple):
    tokens: torch.Tensor    # [B, prefix + N, D] after the last block and the final norm
    patches: torch.Tensor   # [B, N, D] x_p E, after the patch projection, before E_pos


class SCViT(nn.Module):
    """A timm ``VisionTransformer`` plus region pooling for the SC loss.

    backbone: a timm ViT built with ``num_classes`` outputs and the motion's channel count.
    sc_features: where the region embeddings come from (``patch_embed`` | ``last_block``).
    """

    def __init__(self, *, backbone: nn.Module, sc_features: str = "patch_embed") -> None:
        super().__init__()
        if sc_features not in SC_FEATURES:
            raise ValueError(f"sc_features must be one of {SC_FEATURES}, got {sc_features!r}")
        for attr in ("patch_embed", "_pos_embed", "blocks", "norm", "forward_head", "num_prefix_tokens"):
            if not hasattr(backbone, attr):
                raise TypeError(f"backbone {type(backbone).__name__} is not a timm VisionTransformer (no {attr})")
        if getattr(backbone.patch_embed, "flatten", True) is False:
            raise ValueError("the backbone's patch embedding must flatten patches (dynamic_img_size unsupported)")
        self.backbone = backbone
        self.sc_features = sc_features

    @property
    def grid(self) -> tuple[int, int]:
        """Rows and columns of the patch grid."""
        return tuple(int(v) for v in self.backbone.patch_embed.grid_size)

    @property
    def num_classes(self) -> int:
        return int(self.backbone.num_classes)

    @property
    def in_chans(self) -> int:
        return int(self.backbone.patch_embed.proj.in_channels)

    def forward_features(self, x: torch.Tensor) -> Features:
        """Patch projection E, class token and E_pos, the blocks and the final norm (as timm's ViT)."""
        bb = self.backbone
        patches = bb.patch_embed(x)
        tokens = bb._pos_embed(patches)
        tokens = bb.patch_drop(tokens)
        tokens = bb.norm_pre(tokens)
        tokens = bb.blocks(tokens)
        tokens = bb.norm(tokens)
        return Features(tokens=tokens, patches=patches)

    def forward_head(self, features: Features | torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Class-token pooling, head norm and the linear classifier: logits [B, num_classes]."""
        tokens = features.tokens if isinstance(features, Features) else features
        return self.backbone.forward_head(tokens, pre_logits=pre_logits)

    def regions(self, features: Features) -> torch.Tensor:
        """Region embeddings [B, 4, D] (UL, UR, BL, BR) from the layer ``sc_features`` names."""
        if self.sc_features == "patch_embed":
            patches = features.patches
        else:
            patches = features.tokens[:, self.backbone.num_prefix_tokens:]
        return region_embeddings(patches, self.grid)

    def forward(self, x: torch.Tensor, *, with_regions: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits, or (logits, region embeddings) when ``with_regions`` (training with omega > 0)."""
        features = self.forward_features(x)
        logits = self.forward_head(features)
        return (logits, self.regions(features)) if with_regions else logits
