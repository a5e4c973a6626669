"""The motion learner's params sections as nested dataclasses (built by :func:`selfme.config.from_mapping`).

``motion``: the architecture (:class:`MotionConfig`, First Order Motion Model's keys, Eq. 1-8) plus
``method`` (read by the extract stage). ``pretrain`` / ``finetune``: :class:`StageData` (where the
frame pairs come from, the losses and the VGG) and :class:`selfme.motion.train.TrainConfig` (the
optimisation), one flat section in params.yaml, split by :func:`stage_config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from selfme.config import ParamsError, Section, as_dict, check_keys, from_mapping
from selfme.motion.generator import WARP_PADDINGS

SOURCES = ("synthme", "manifest", "voxceleb")


@dataclass(frozen=True, kw_only=True)
class KPDetectorConfig:
    """F_kp (Eq. 1): an hourglass, a softmax heatmap per keypoint (``temperature``) on an input shrunk by
    ``scale_factor``; ``estimate_jacobian``: FOMM's local affine Jacobians (a departure from Eq. 2)."""

    block_expansion: int
    max_features: int
    num_blocks: int
    temperature: float
    scale_factor: float
    pad: int
    estimate_jacobian: bool = False


@dataclass(frozen=True, kw_only=True)
class DenseMotionConfig:
    """F_dense (Eq. 3-5): an hourglass on the input shrunk by ``scale_factor``; Gaussian heatmaps of
    variance ``kp_variance``; ``residual_flow``: the hourglass also sees the target and adds a free
    residual displacement to Eq. 5 (a departure; ``selfme.motion.dense_motion``)."""

    block_expansion: int
    max_features: int
    num_blocks: int
    scale_factor: float
    kp_variance: float
    residual_flow: bool = False


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """The occlusion-aware generator; ``image_skip``: blend the warped source into the output by the
    occlusion map (a departure; FOMM's generator without it); ``warp_padding``: what every warp samples
    outside the source, ``zeros`` (FOMM's) or ``border`` (a departure; ``selfme.motion.generator``)."""

    block_expansion: int
    max_features: int
    num_down_blocks: int
    num_bottleneck_blocks: int
    estimate_occlusion_map: bool
    image_skip: bool = False
    warp_padding: Literal[WARP_PADDINGS] = "zeros"


@dataclass(frozen=True, kw_only=True)
class MotionConfig(Section):
    """params.yaml's ``motion`` section: ``method`` (the extract stage's motion source) and the learner."""

    SECTION = "motion"

    method: str = "selfme"
    image_size: int
    num_kp: int
    num_channels: int
    kp_detector: KPDetectorConfig
    dense_motion: DenseMotionConfig
    generator: GeneratorConfig

    def __post_init__(self) -> None:
        for name, sub in (("kp_detector", self.kp_detector), ("dense_motion", self.dense_motion)):
            factor = 2 ** sub.num_blocks
            if (self.image_size * sub.scale_factor) % factor:
                raise ParamsError(f"motion.image_size {self.image_size} x motion.{name}.scale_factor "
                                  f"{sub.scale_factor} must be divisible by 2^num_blocks = {factor}")

    def architecture(self) -> dict[str, Any]:
        """The networks' config as plain dicts (what a model file stores), without ``method``."""
        out = as_dict(self)
        del out["method"]
        return out


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Eq. 8's weights (``pixel``: a departure, the same pyramid in pixel space; ``warp``: a departure, the
    same pixel pyramid on the source warped by the dense motion alone; ``equivariance_jacobian``: FOMM's
    Jacobian term) and the losses' settings (pyramid scales, VGG layer weights, the random TPS)."""

    perceptual: float = 10.0
    pixel: float = 0.0
    warp: float = 0.0
    equivariance: float = 10.0
    equivariance_jacobian: float = 10.0
    scales: tuple[int | float, ...] = (1, 0.5, 0.25, 0.125)
    layer_weights: tuple[int | float, ...] = (1, 1, 1, 1, 1)
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5


@dataclass(frozen=True, kw_only=True)
class VggConfig:
    """The perceptual loss's VGG-19: ImageNet weights (``weights``: the file; null: torchvision's cache)."""

    pretrained: bool = True
    weights: str | None = None


@dataclass(frozen=True, kw_only=True)
class HeadMotion:
    """Synthetic rigid head motion of the demo's pretraining targets (pixels of the learner's input)."""

    translate_px: float = 0.0
    rotate_deg: float = 0.0
    scale: float = 0.0


@dataclass(frozen=True, kw_only=True)
class StageData:
    """The data part of a pretrain / finetune section (the rest is :class:`TrainConfig`).

    source: synthme (crops + synthetic head motion) | manifest (ME clips) | voxceleb; data: a face-crop
    folder, a list of them, ``all`` (finetune) or the VoxCeleb folder. holdout_clips: clips never
    trained on (seeded split). onset_apex: share of (onset, near-apex) pairs within ``apex_window``
    frames of the apex. init: initial weights. repeats: pairs per video when pairs_per_epoch is null.
    """

    source: Literal[SOURCES] = "manifest"
    data: str | list[str]
    voxceleb_split: str = "train"
    head_motion: HeadMotion | None = None
    hflip: bool = False
    holdout_clips: int | None = 0
    onset_apex: float | None = 0.0
    apex_window: int = 2
    init: str | None = None
    repeats: int | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    vgg: VggConfig = field(default_factory=VggConfig)

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("data: empty (a face-crop folder, a list of them, or the VoxCeleb folder)")


def stage_config(section: Mapping[str, Any], *, prefix: str) -> tuple[StageData, Any]:
    """Split and build a pretrain / finetune section: (StageData, TrainConfig with pairs_per_epoch
    possibly None, to be set from ``repeats``)."""
    from selfme.motion.train import TrainConfig

    if not isinstance(section, Mapping):
        raise ParamsError(f"{prefix}: expected a mapping, got {section!r}")
    data_keys = {f.name for f in dataclasses.fields(StageData)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    check_keys(section, data_keys | train_keys, prefix=prefix)
    if "data" not in section:
        raise ParamsError(f"{prefix}.data: missing key (a face-crop folder, or the VoxCeleb folder)")
    data = from_mapping(StageData, {k: v for k, v in section.items() if k in data_keys}, prefix=prefix)
    train = from_mapping(TrainConfig, {k: v for k, v in section.items() if k in train_keys}, prefix=prefix)
    return data, train
