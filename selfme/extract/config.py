"""Settings of the extraction stage: params.yaml's ``extract`` section plus ``motion.method``."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Mapping

from selfme.config import Section, as_dict, check_keys, coerce, from_mapping
from selfme.device import AMP_MODES
from selfme.flow.classic import CLASSICAL_METHODS, DIS_DEFAULTS, FARNEBACK_DEFAULTS, DisParams, FarnebackParams
from selfme.extract.refine import RefineParams
from selfme.flow.tvl1 import TVL1Params

METHODS = ("selfme",) + CLASSICAL_METHODS
SOURCE_FRAMES = ("onset", "apex")
FORMAT = "selfme-motion/1"
CONVENTION = ("forward (OpenCV) flow onset -> apex in pixels of the crop: onset(x) ~= apex(x + F(x)); "
              "[..., 0] = dx, [..., 1] = dy")


def _given(cls: type, values: Mapping[str, Any] | None, prefix: str) -> dict[str, Any]:
    """The keys of a flow sub-section, checked and coerced by ``cls`` (omitted keys stay omitted)."""
    checked = as_dict(from_mapping(cls, values, prefix=prefix))
    return {k: checked[k] for k in (values or {})}


@dataclass(frozen=True)
class ExtractConfig(Section):
    """What the extraction of one clip depends on (besides the frames and the model file).

    gamma: motion amplification of the learned motion (Eq. 2; the paper's best is 2). It scales the
        keypoint displacements inside the learner; the classical flows are stored unscaled.
    bspline: true = cubic B-spline expansion of the H/4 lattice (Eq. 9) then scaling and squaring with
        ``ss_steps`` steps (0: the B-spline field as it is); false = plain bilinear upsampling, no
        exponentiation (the Table 1 ablation).
    source_frame: which frame the learner takes as its source image (FOMM's warped frame); the stored
        field is converted to the forward onset -> apex convention either way (see selfme.extract.engine).
    threads: torch's intra-op threads for the stage (fixed: results depend on it; 0: torch's default).
    amp: the learned motion's networks under bf16 autocast (``bf16``; keypoints, the displacement, the
        B-spline, scaling and squaring and everything after stay float32) or float32 (``none``). At the
        paper architecture bf16 runs 1.4x faster on a CPU with native bf16 (AVX512_BF16); a small learner
        (the demo's) runs slower. It moves the demo learner's SynthME fields by about 0.014 px (mean;
        their mean magnitude is 0.22 px): a fast setting, not the reference.
    refine: the learned motion only: instance refinement at the crop's resolution by the pair's own warp
        loss (selfme.extract.refine; a departure, ``steps`` 0 is off, the paper's).
    flow_size: the classical flows only: computed on the frames resized to flow_size x flow_size (area
        interpolation), the flow resized back to the crop (bilinear) in crop pixels; 0: at the crop's own
        size. A reference for the learner: TV-L1 at the learner's input size (motion.image_size) sees
        what the learner sees (docs/motion_learning.md).
    """

    SECTION = "extract"

    method: Literal[METHODS] = "selfme"
    gamma: float = 2.0
    bspline: bool = True
    ss_steps: int = 7
    source_frame: Literal[SOURCE_FRAMES] = "onset"
    batch_size: int = 8
    device: str = "auto"
    plot_clips: int = 4
    threads: int = 1
    amp: Literal[AMP_MODES] = "none"
    flow_size: int = 0
    refine: dict = field(default_factory=dict)
    tvl1: dict = field(default_factory=dict)
    farneback: dict = field(default_factory=dict)
    dis: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.gamma > 0:
            raise ValueError(f"extract.gamma must be > 0, got {self.gamma}")
        if self.ss_steps < 0 or self.batch_size < 1 or self.plot_clips < 0 or self.threads < 0 or self.flow_size < 0:
            raise ValueError("extract.ss_steps, extract.plot_clips, extract.threads and extract.flow_size must be "
                             ">= 0, extract.batch_size >= 1")
        TVL1Params.from_mapping(self.tvl1, prefix="extract.tvl1")  # bad keys fail here, not halfway through
        self.refine_params  # bad keys fail here, not halfway through
        object.__setattr__(self, "farneback", _given(FarnebackParams, self.farneback, "extract.farneback"))
        object.__setattr__(self, "dis", _given(DisParams, self.dis, "extract.dis"))

    @classmethod
    def from_mapping(cls, extract: Mapping[str, Any] | None, *, method: str | None = None,
                     prefix: str = "extract", **overrides: Any) -> "ExtractConfig":
        """From params.yaml's ``extract`` section (unknown keys and wrong types are a ParamsError naming
        the key), ``motion.method`` and overrides (a motion_eval variant's; an override of a sub-section,
        e.g. ``refine: {init: zero}``, keeps the section's other keys); a null sub-section is empty."""
        values = copy.deepcopy(dict(extract or {}))
        if method is not None:  # params.yaml's motion.method: a bad one is named as that key
            values["method"] = coerce(method, Literal[METHODS], "motion.method")
        for key in ("refine", "tvl1", "farneback", "dis"):
            if key in values and values[key] is None:
                values[key] = {}
            # a sub-section override changes only its own keys
            if isinstance(overrides.get(key), Mapping) and isinstance(values.get(key, {}), Mapping):
                overrides = {**overrides, key: {**values.get(key, {}), **overrides[key]}}
        values.update(overrides)
        return from_mapping(cls, values, prefix=prefix)

    def method_params(self) -> dict[str, Any]:
        """The parameters the stored field of a clip depends on (part of its skip key and sidecar)."""
        if self.method == "selfme":
            out: dict[str, Any] = {"gamma": float(self.gamma), "bspline": self.bspline,
                                   "source_frame": self.source_frame}
            if self.amp != "none":  # the default is left out: fields stored before the key existed stay valid
                out["amp"] = self.amp
            out["ss_steps"] = int(self.ss_steps) if self.bspline else 0
            if self.refine_params.steps:  # off is left out, as amp: fields stored before the key stay valid
                out["refine"] = self.refine_params.as_dict()
            return out
        if self.method == "tvl1":
            out = TVL1Params.from_mapping(self.tvl1).as_dict()
        elif self.method == "farneback":
            out = {**FARNEBACK_DEFAULTS, **self.farneback}
        else:
            out = {**DIS_DEFAULTS, **self.dis}
        if self.flow_size:  # the default is left out, as amp's: fields stored before the key stay valid
            out["flow_size"] = int(self.flow_size)
        return out

    @cached_property
    def refine_params(self) -> RefineParams:
        """``refine`` checked, with its defaults (selfme.extract.refine; steps 0: off), parsed once."""
        return RefineParams.from_mapping(self.refine)

    @property
    def applied_gamma(self) -> float:
        """gamma as applied to the stored field: the learned motion only (classical flows: 1)."""
        return float(self.gamma) if self.method == "selfme" else 1.0


@dataclass(frozen=True, kw_only=True)
class MotionEvalConfig(Section):
    """params.yaml's ``motion_eval`` section: every variant (name -> overrides of the ``extract`` section)
    against SynthME's ground-truth motion; max_clips 0: every clip with ground truth; threads: torch's
    intra-op threads for the stage (fixed: the learned motion's timings and rounding depend on it)."""

    SECTION = "motion_eval"

    dataset: str = "synthme"
    max_clips: int = 0
    plot_clips: int = 4
    threads: int = 1
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_clips < 0 or self.plot_clips < 0 or self.threads < 0:
            raise ValueError("motion_eval.max_clips, motion_eval.plot_clips and motion_eval.threads must be >= 0")
        known = [f for f in ExtractConfig.__dataclass_fields__ if f != "threads"]
        for name, overrides in self.variants.items():
            check_keys(overrides, known, prefix=f"motion_eval.variants.{name}")
