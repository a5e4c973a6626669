"""Settings of the extraction stage: params.yaml's ``extract`` section plus ``motion.method``."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from selfme.flow.classic import CLASSICAL_METHODS, DIS_DEFAULTS, DIS_PRESETS, FARNEBACK_DEFAULTS
from selfme.flow.tvl1 import TVL1Params

METHODS = ("selfme",) + CLASSICAL_METHODS
SOURCE_FRAMES = ("onset", "apex")
FORMAT = "selfme-motion/1"
CONVENTION = ("forward (OpenCV) flow onset -> apex in pixels of the crop: onset(x) ~= apex(x + F(x)); "
              "[..., 0] = dx, [..., 1] = dy")


@dataclass(frozen=True)
class ExtractConfig:
    """What the extraction of one clip depends on (besides the frames and the model file).

    gamma: motion amplification of the learned motion (Eq. 2; the paper's best is 2). It scales the
        keypoint displacements inside the learner; the classical flows are stored unscaled.
    bspline: true = cubic B-spline expansion of the H/4 lattice (Eq. 9) then scaling and squaring with
        ``ss_steps`` steps (0: the B-spline field as it is); false = plain bilinear upsampling, no
        exponentiation (the Table 1 ablation).
    source_frame: which frame the learner takes as its source image (FOMM's warped frame); the stored
        field is converted to the forward onset -> apex convention either way (see selfme.extract.engine).
    """

    method: str = "selfme"
    gamma: float = 2.0
    bspline: bool = True
    ss_steps: int = 7
    source_frame: str = "onset"
    batch_size: int = 8
    device: str = "auto"
    plot_clips: int = 4
    tvl1: dict = field(default_factory=dict)
    farneback: dict = field(default_factory=dict)
    dis: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"motion.method must be one of {METHODS}, got {self.method!r}")
        if self.source_frame not in SOURCE_FRAMES:
            raise ValueError(f"extract.source_frame must be one of {SOURCE_FRAMES}, got {self.source_frame!r}")
        if not self.gamma > 0:
            raise ValueError(f"extract.gamma must be > 0, got {self.gamma}")
        if self.ss_steps < 0 or self.batch_size < 1 or self.plot_clips < 0:
            raise ValueError("extract.ss_steps and extract.plot_clips must be >= 0, extract.batch_size >= 1")
        TVL1Params.from_mapping(self.tvl1)  # unknown keys fail here, not halfway through a dataset
        for name, values, defaults in (("farneback", self.farneback, FARNEBACK_DEFAULTS),
                                       ("dis", self.dis, DIS_DEFAULTS)):
            unknown = set(values) - set(defaults)
            if unknown:
                raise KeyError(f"extract.{name}: unknown keys {sorted(unknown)} (known: {sorted(defaults)})")
        if self.dis.get("preset", DIS_DEFAULTS["preset"]) not in DIS_PRESETS:
            raise ValueError(f"extract.dis.preset must be one of {sorted(DIS_PRESETS)}")

    @classmethod
    def from_params(cls, extract: Mapping[str, Any] | None, *, method: str | None = None,
                    **overrides: Any) -> "ExtractConfig":
        """From params.yaml's ``extract`` section (unknown keys are an error) and ``motion.method``."""
        values = copy.deepcopy(dict(extract or {}))
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise KeyError(f"extract: unknown keys {sorted(unknown)} (known: {sorted(names)})")
        if method is not None:
            values["method"] = method
        values.update(overrides)
        for key in ("tvl1", "farneback", "dis"):
            values[key] = dict(values.get(key) or {})
        values["bspline"] = bool(values.get("bspline", True))
        return cls(**values)

    def method_params(self) -> dict[str, Any]:
        """The parameters the stored field of a clip depends on (part of its skip key and sidecar)."""
        if self.method == "selfme":
            out: dict[str, Any] = {"gamma": float(self.gamma), "bspline": self.bspline,
                                   "source_frame": self.source_frame}
            out["ss_steps"] = int(self.ss_steps) if self.bspline else 0
            return out
        if self.method == "tvl1":
            return TVL1Params.from_mapping(self.tvl1).as_dict()
        if self.method == "farneback":
            return {**FARNEBACK_DEFAULTS, **self.farneback}
        return {**DIS_DEFAULTS, **self.dis}

    @property
    def applied_gamma(self) -> float:
        """gamma as applied to the stored field: the learned motion only (classical flows: 1)."""
        return float(self.gamma) if self.method == "selfme" else 1.0
