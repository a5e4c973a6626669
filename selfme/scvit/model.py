"""SCViT (Sec. 3.3): a timm Vision Transformer that classifies a motion and exposes the face-region
embeddings the symmetric contrastive loss needs.

ViT (Dosovitskiy et al.): the input is cut into N patches x_p^1..x_p^N, each linearly projected by E,
z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos, then L Transformer blocks and a classification head on
the class token. The SC loss reads the patch embeddings x_p E right after E (``sc_features:
patch_embed``, the paper's choice) or the patch tokens after the last block and its norm
(``last_block``), pooled over the four face quadrants.

Eq. 15's classification head is LN followed by an MLP with one hidden layer, y = MLP(LN(z_L^0)): timm's
final norm is the LN, and ``head_hidden`` > 0 replaces timm's linear head by Linear(D, head_hidden),
tanh, Linear(head_hidden, C) (the one-hidden-layer head of ViT, Dosovitskiy et al., whose pre-logits
layer is tanh); ``head_hidden: 0`` keeps the single linear layer.
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


class SoftmaxEnsemble(nn.Module):
    """K trained models as one (``loso.ensemble``): the class probabilities are the mean of the members'
    softmax, p = (1/K) sum_k softmax(f_k(x)). ``forward`` returns log p, so a softmax of its output (as
    ``selfme.scvit.train.predict`` takes) gives p back exactly (p sums to 1)."""

    def __init__(self, *, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(0)
        return torch.log(probs.clamp(min=torch.finfo(probs.dtype).tiny))


class MLPHead(nn.Sequential):
    """Eq. 15's MLP with one hidden layer: Linear(D, hidden), tanh, Linear(hidden, C)."""

    def __init__(self, *, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, num_classes))

    @property
    def out_features(self) -> int:
        return self[-1].out_features


class SCViT(nn.Module):
    """A timm ``VisionTransformer`` plus region pooling for the SC loss and Eq. 15's head.

    backbone: a timm ViT built with ``num_classes`` outputs and the motion's channel count.
    sc_features: where the region embeddings come from (``patch_embed`` | ``last_block``).
    head_hidden: width of the head's hidden layer (Eq. 15); 0 keeps the backbone's linear head.
    """

    def __init__(self, *, backbone: nn.Module, sc_features: str = "patch_embed", head_hidden: int = 0) -> None:
        super().__init__()
        if sc_features not in SC_FEATURES:
            raise ValueError(f"sc_features must be one of {SC_FEATURES}, got {sc_features!r}")
        for attr in ("patch_embed", "forward_features", "forward_head", "num_prefix_tokens"):
            if not hasattr(backbone, attr):
                raise TypeError(f"backbone {type(backbone).__name__} is not a timm VisionTransformer (no {attr})")
        if getattr(backbone.patch_embed, "flatten", True) is False:
            raise ValueError("the backbone's patch embedding must flatten patches (dynamic_img_size unsupported)")
        if head_hidden < 0:
            raise ValueError(f"head_hidden must be >= 0, got {head_hidden}")
        if head_hidden:
            backbone.head = MLPHead(in_features=int(backbone.num_features), hidden=int(head_hidden),
                                    num_classes=int(backbone.num_classes))
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
        """timm's ``forward_features`` (patch projection E, class token and E_pos, the blocks, the final
        norm); the patch embeddings x_p E are read on the way by a forward hook on ``patch_embed``."""
        captured: list[torch.Tensor] = []
        handle = self.backbone.patch_embed.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            tokens = self.backbone.forward_features(x)
        finally:
            handle.remove()
        return Features(tokens=tokens, patches=captured[0])

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
