"""The crop stage's parameters (params.yaml section ``crop``), validated, with the fingerprint that
decides whether an already cropped clip is still up to date."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from selfme.face.align import BORDERS, AlignTarget
from selfme.face.backends import BACKENDS

#: Bumped whenever the cropping code changes what it writes, so old crops are redone.
CROP_VERSION = 2  # 2: frames that disagree with both neighbours are left out or fail the clip
GRAY_MODES = ("keep", "replicate")
FRAME_MODES = ("clip", "all")
IMAGE_FORMATS = ("keep", "png", "jpg")
#: Backend options that change only speed or placement, not the crops.
_RUNTIME_OPTIONS = {"device", "batch_size", "compile"}


def _dlib_defaults() -> dict[str, Any]:
    return {"upsample": 1, "min_score": 0.5}


def _face_alignment_defaults() -> dict[str, Any]:
    return {"device": "auto", "batch_size": 8, "min_score": 0.5, "compile": False}


@dataclass(frozen=True, kw_only=True)
class CropConfig:
    """Face crop and alignment settings.

    backend: landmark backend (``dlib`` offline; ``face_alignment`` needs its weights on disk).
    size: side of the square crop in pixels (256 for the paper's motion learner).
    eye_distance, eye_y: inter-ocular distance and eye-line height as fractions of ``size``.
    gray: grey sources (manifest color ``gray``) written single-channel (``keep``) or as three equal
        channels (``replicate``).
    frames: crop the frames from onset to offset (``clip``) or every frame in the folder (``all``).
    image_format: ``keep`` each frame's file type, or write ``png`` / ``jpg`` (same stem, same number).
    border: how pixels outside the source frame are filled (``replicate``, ``constant`` black, ``reflect``).
    detect_max_side: frames are shrunk to this longer side for face detection only (0: never).
    drift_check_frames: extra frames (apex first, then offset, then evenly spaced) whose landmarks are
        compared with the onset's; drift_warn_px: eye movement in crop pixels that draws a warning.
    corrupt_area: a frame whose image data decodes but disagrees with both neighbouring frames over more
        than this fraction of its area is damaged (``selfme.face.consistency``): a key frame fails the
        clip, another frame is left out with a warning; 0 turns the check off.
    max_failure_rate: the stage fails when more than this fraction of clips could not be cropped.
    workers: threads warping a clip's frames (0: one per CPU core).
    """

    backend: str = "dlib"
    size: int = 128
    eye_distance: float = 0.34
    eye_y: float = 0.37
    gray: str = "keep"
    frames: str = "clip"
    image_format: str = "keep"
    jpeg_quality: int = 95
    border: str = "replicate"
    detect_max_side: int = 640
    drift_check_frames: int = 2
    drift_warn_px: float = 4.0
    corrupt_area: float = 0.01
    max_failure_rate: float = 0.05
    workers: int = 0
    dlib: dict[str, Any] = field(default_factory=_dlib_defaults)
    face_alignment: dict[str, Any] = field(default_factory=_face_alignment_defaults)

    def __post_init__(self) -> None:
        checks = [("backend", BACKENDS), ("gray", GRAY_MODES), ("frames", FRAME_MODES),
                  ("image_format", IMAGE_FORMATS), ("border", tuple(BORDERS))]
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ValueError(f"crop.{name} must be one of {list(allowed)}, not {getattr(self, name)!r}")
        if not 0.0 <= self.corrupt_area <= 1.0:
            raise ValueError(f"crop.corrupt_area is a fraction in [0, 1], not {self.corrupt_area}")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ValueError(f"crop.max_failure_rate is a fraction in [0, 1], not {self.max_failure_rate}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"crop.jpeg_quality must be in [1, 100], not {self.jpeg_quality}")
        if self.drift_check_frames < 0 or self.workers < 0 or self.detect_max_side < 0:
            raise ValueError("crop.drift_check_frames, crop.workers and crop.detect_max_side must be >= 0")
        # Merge partial backend sections over the defaults (params.yaml may set only one key).
        object.__setattr__(self, "dlib", {**_dlib_defaults(), **(self.dlib or {})})
        object.__setattr__(self, "face_alignment", {**_face_alignment_defaults(), **(self.face_alignment or {})})
        self.target()  # validates size and eye fractions

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "CropConfig":
        """Build from the ``crop`` section of params.yaml; an unknown key is an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown crop parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**params)

    def replace(self, **changes: Any) -> "CropConfig":
        """A copy with some settings changed (None values are ignored, as from unset CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def target(self) -> AlignTarget:
        return AlignTarget(size=int(self.size), eye_distance=float(self.eye_distance), eye_y=float(self.eye_y))

    def backend_options(self) -> dict[str, Any]:
        """Constructor options of the chosen backend (its params.yaml sub-section)."""
        return dict(getattr(self, self.backend))

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the written crops (not workers, the failure threshold or the device)."""
        skip = {"workers", "max_failure_rate", "dlib", "face_alignment"}
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        values["backend_options"] = {k: v for k, v in sorted(self.backend_options().items())
                                     if k not in _RUNTIME_OPTIONS}
        values["version"] = CROP_VERSION
        return values
