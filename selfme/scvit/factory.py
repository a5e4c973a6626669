"""SCViT's parameters (params.yaml section ``scvit``) and the factory that builds the model.

Paper (configs/paper.yaml): ``vit_small_patch16_224`` at 224 x 224, ImageNet-initialised, omega 0.11
(0.1 in sweeps), tau 0.07, SC on the patch embeddings after E. The demo profile shrinks the ViT through
timm's own keyword arguments (img_size, depth, embed_dim, num_heads) and trains it from scratch.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Literal

from selfme.config import Section
from selfme.scvit.inputs import NORMALIZATIONS, InputConfig
from selfme.scvit.losses import SC_FORMS
from selfme.scvit.model import SC_FEATURES, SCViT
from selfme.scvit.peers import PEERS, create_peer
from selfme.scvit.stem import STEMS, conv_stem_layer
from selfme.scvit.weights import create_backbone, resolve_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SCViTConfig(Section):
    """Model, input and loss settings.

    model_name: a timm ViT (``vit_small_patch16_224``: ViT-S/16). img_size: input side in pixels.
    patch_size, depth, embed_dim, num_heads: timm overrides (null keeps the model's own); with
        pretrained weights, a smaller depth keeps the first ``depth`` blocks, embed_dim/num_heads
        cannot change. drop_rate, drop_path_rate: dropout and stochastic depth.
    pretrained: ImageNet initialisation (weights_file, else the Hugging Face cache); false: random.
    channels, motion_scale, strain_scale, normalize: the input transform (``selfme.scvit.inputs``).
    omega: SC weight in CE + omega * SC (0 disables SC). tau: SC temperature.
    sc_features: region embeddings after the patch projection E (``patch_embed``, the paper's) or
        after the last block (``last_block``). sc_own_mirror: a sample's own mirrored region is a
        positive (the symmetric pull, Eq. 12-14); false keeps only other samples of the class.
    sc_form: ``eq14`` (the paper's per-(anchor, region) contrast, Eq. 14) or ``supcon`` (one supervised
        contrastive softmax over all region embeddings); see ``selfme.scvit.losses``.
    head_hidden: hidden width of Eq. 15's MLP head (LN, then one hidden layer); 0: a linear head.
    stem: the patch embedding E, ``linear`` (ViT's) or ``conv`` (a small convolutional stem with
        ``stem_channels`` filters, ``selfme.scvit.stem``; random initialisation only).
    model_name ``ststnet`` or ``off_apexnet`` builds that published CNN instead (``selfme.scvit.peers``;
    random initialisation, img_size 28; the ViT keys are unused, the loss keys apply as to SCViT).
    """

    SECTION = "scvit"

    model_name: str = "vit_small_patch16_224"
    img_size: int = 224
    patch_size: int | None = None
    depth: int | None = None
    embed_dim: int | None = None
    num_heads: int | None = None
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    pretrained: bool = True
    weights_file: str | None = None
    channels: tuple[str, ...] = ("dx", "dy", "mag")
    motion_scale: float = 1.0
    strain_scale: float = 0.05
    normalize: Literal[NORMALIZATIONS] = "fixed"
    omega: float = 0.1
    tau: float = 0.07
    sc_features: Literal[SC_FEATURES] = "patch_embed"
    sc_own_mirror: bool = True
    sc_form: Literal[SC_FORMS] = "eq14"
    head_hidden: int = 384
    stem: Literal[STEMS] = "linear"
    stem_channels: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        if self.head_hidden < 0:
            raise ValueError(f"scvit.head_hidden must be >= 0, got {self.head_hidden}")
        if self.omega < 0 or self.tau <= 0:
            raise ValueError(f"scvit.omega must be >= 0 and scvit.tau > 0 (got {self.omega}, {self.tau})")
        if self.pretrained and (self.embed_dim is not None or self.num_heads is not None):
            raise ValueError("scvit.embed_dim / scvit.num_heads overrides need scvit.pretrained: false "
                             "(ImageNet weights fix the width)")
        if self.pretrained and (self.model_name in PEERS or self.stem != "linear"):
            raise ValueError(f"scvit.model_name {self.model_name} with scvit.stem {self.stem} has no ImageNet "
                             f"weights: set scvit.pretrained: false")
        self.input_config()  # validates the input settings

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        return out

    def input_config(self) -> InputConfig:
        return InputConfig(img_size=self.img_size, channels=self.channels, motion_scale=self.motion_scale,
                           strain_scale=self.strain_scale, normalize=self.normalize)


def timm_kwargs(config: SCViTConfig, *, num_classes: int, in_chans: int) -> dict[str, Any]:
    """Keyword arguments of ``timm.create_model`` for this configuration (weights excluded)."""
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans, "img_size": config.img_size,
                              "drop_rate": config.drop_rate, "drop_path_rate": config.drop_path_rate}
    for name in ("patch_size", "depth", "embed_dim", "num_heads"):
        value = getattr(config, name)
        if value is not None:
            kwargs[name] = int(value)
    return kwargs


def create_scvit(config: SCViTConfig, *, num_classes: int, in_chans: int) -> tuple[SCViT, str]:
    """Build SCViT (random or ImageNet initialisation, as configured); returns it and where its weights
    came from. Missing weights with ``pretrained: true`` raise WeightsNotFound naming the file, a file
    that does not hold the model's weights WeightsMismatch (``selfme.scvit.weights``)."""
    if config.model_name in PEERS:
        peer = create_peer(config.model_name, num_classes=num_classes, in_chans=in_chans, img_size=config.img_size,
                           drop_rate=config.drop_rate)
        log.info("scvit: peer %s, random initialisation", config.model_name)
        return peer, "random initialisation (published peer)"
    source = resolve_weights(config.model_name, pretrained=config.pretrained, weights_file=config.weights_file)
    kwargs = timm_kwargs(config, num_classes=num_classes, in_chans=in_chans)
    if config.pretrained and config.depth is not None:
        kwargs["pretrained_strict"] = False  # the checkpoint's blocks beyond ``depth`` are left unused
        log.info("scvit: keeping the first %d pretrained blocks", config.depth)
    if config.stem == "conv":
        kwargs["embed_layer"] = conv_stem_layer(config.stem_channels)
    backbone = create_backbone(config.model_name, source, **kwargs)
    log.info("scvit: %s, %s", config.model_name, source.description)
    model = SCViT(backbone=backbone, sc_features=config.sc_features, head_hidden=config.head_hidden)
    return model, source.description
