"""The crop stage's parameters (params.yaml section ``crop``), validated, with the fingerprint that
decides whether an already cropped clip is still up to date."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from selfme.config import Section, as_dict, from_mapping
from selfme.face.align import BORDERS, AlignTarget
from selfme.face.backends import BACKENDS

#: Bumped whenever the cropping code changes what it writes, so old crops are redone.
CROP_VERSION = 2  # 2: frames that disagree with both neighbours are left out or fail the clip
GRAY_MODES = ("keep", "replicate")
FRAME_MODES = ("clip", "all")
IMAGE_FORMATS = ("keep", "png", "jpg")
BORDER_MODES = tuple(BORDERS)
#: Backend options that change only speed or placement, not the crops.
_RUNTIME_OPTIONS = {"device", "batch_size", "compile"}


@dataclass(frozen=True, kw_only=True)
class DlibOptions:
    """``crop.dlib``: HOG detector upsampling and score threshold (:class:`selfme.face.backends.DlibBackend`)."""

    upsample: int = 1
    min_score: float = 0.5


@dataclass(frozen=True, kw_only=True)
class FaceAlignmentOptions:
    """``crop.face_alignment``: 2DFAN4 + S3FD settings (device, batch size and compile change only speed)."""

    device: str = "auto"
    batch_size: int = 8
    min_score: float = 0.5
    compile: bool = False


def _dlib_defaults() -> dict[str, Any]:
    return as_dict(DlibOptions())


def _face_alignment_defaults() -> dict[str, Any]:
    return as_dict(FaceAlignmentOptions())


@dataclass(frozen=True, kw_only=True)
class CropConfig(Section):
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
    threads: torch's intra-op threads (the face_alignment backend's networks; 0: torch's default).
    dlib, face_alignment: the backends' options (partial sections merge over the defaults).
    """

    SECTION = "crop"

    backend: Literal[BACKENDS] = "dlib"
    size: int = 128
    eye_distance: float = 0.34
    eye_y: float = 0.37
    gray: Literal[GRAY_MODES] = "keep"
    frames: Literal[FRAME_MODES] = "clip"
    image_format: Literal[IMAGE_FORMATS] = "keep"
    jpeg_quality: int = 95
    border: Literal[BORDER_MODES] = "replicate"
    detect_max_side: int = 640
    drift_check_frames: int = 2
    drift_warn_px: float = 4.0
    corrupt_area: float = 0.01
    max_failure_rate: float = 0.05
    workers: int = 0
    threads: int = 1
    dlib: dict[str, Any] = field(default_factory=_dlib_defaults)
    face_alignment: dict[str, Any] = field(default_factory=_face_alignment_defaults)

    def __post_init__(self) -> None:
        if not 0.0 <= self.corrupt_area <= 1.0:
            raise ValueError(f"crop.corrupt_area is a fraction in [0, 1], not {self.corrupt_area}")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ValueError(f"crop.max_failure_rate is a fraction in [0, 1], not {self.max_failure_rate}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"crop.jpeg_quality must be in [1, 100], not {self.jpeg_quality}")
        if min(self.drift_check_frames, self.workers, self.detect_max_side, self.threads) < 0:
            raise ValueError("crop.drift_check_frames, crop.workers, crop.detect_max_side and crop.threads "
                             "must be >= 0")
        # Partial backend sections merge over the defaults (params.yaml may set only one key).
        for name, cls in (("dlib", DlibOptions), ("face_alignment", FaceAlignmentOptions)):
            object.__setattr__(self, name, as_dict(from_mapping(cls, getattr(self, name), prefix=f"crop.{name}")))
        self.target()  # validates size and eye fractions

    def replace(self, **changes: Any) -> "CropConfig":
        """A copy with some settings changed (None values are ignored, as from unset CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def target(self) -> AlignTarget:
        return AlignTarget(size=int(self.size), eye_distance=float(self.eye_distance), eye_y=float(self.eye_y))

    def backend_options(self) -> dict[str, Any]:
        """Constructor options of the chosen backend (its params.yaml sub-section)."""
        return dict(getattr(self, self.backend))

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the written crops (not workers, threads, the failure threshold or the
        device)."""
        skip = {"workers", "threads", "max_failure_rate", "dlib", "face_alignment"}
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        values["backend_options"] = {k: v for k, v in sorted(self.backend_options().items())
                                     if k not in _RUNTIME_OPTIONS}
        values["version"] = CROP_VERSION
        return values
