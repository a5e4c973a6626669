"""SynthME generation settings (the ``synth`` section of params.yaml, one field per key)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from selfme.config import Section


@dataclass(frozen=True, kw_only=True)
class SynthConfig(Section):
    """Everything that determines a SynthME dataset; the same config and seed give the same bytes.

    Sizes are in pixels of the raw frame. Every nuisance (jitter, blinks, flicker, noise) can be
    switched off with 0; ``jpeg_quality`` is the quality of the written JPEG frames (1-100).
    """

    SECTION = "synth"

    subjects: int = 8
    clips_per_subject: int = 6
    frames_per_clip: int = 24
    frame_width: int = 320
    frame_height: int = 240
    #: Height of the face box (hairline to chin), before the per-subject scale variation (+-8%).
    face_height_px: float = 140.0
    #: Largest expression displacement at the apex of the strongest clips (weaker clips scale down).
    amplitude_px: float = 2.5
    #: Fraction of the clips beyond the three guaranteed per subject that are 'others'.
    others_fraction: float = 0.1
    #: Stationary standard deviation of the global head/camera jitter (per axis, pixels).
    jitter_px: float = 0.3
    #: Probability that a clip contains one blink (never over the onset or apex frame).
    blink_prob: float = 0.3
    #: Relative amplitude of the global illumination gain oscillation (0.01 = +-1%).
    flicker: float = 0.01
    #: Standard deviation of the additive Gaussian sensor noise, in grey levels.
    noise_sigma: float = 1.5
    jpeg_quality: int = 90
    fps: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.subjects >= 1, "subjects must be >= 1"),
            (3 <= self.clips_per_subject <= 100,
             "clips_per_subject must be in [3, 100] (each subject gets one clip of each of the three classes)"),
            (self.frames_per_clip >= 5, "frames_per_clip must be >= 5"),
            (self.frame_width >= 64 and self.frame_height >= 48, "frame size must be at least 64x48"),
            (0 < self.face_height_px <= 0.8 * self.frame_height,
             "face_height_px must be positive and at most 0.8 * frame_height"),
            (0 < self.amplitude_px <= 10, "amplitude_px must be in (0, 10]"),
            (0 <= self.others_fraction <= 1, "others_fraction must be in [0, 1]"),
            (self.jitter_px >= 0, "jitter_px must be >= 0"),
            (0 <= self.blink_prob <= 1, "blink_prob must be in [0, 1]"),
            (0 <= self.flicker < 0.5, "flicker must be in [0, 0.5)"),
            (self.noise_sigma >= 0, "noise_sigma must be >= 0"),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality must be in [1, 100]"),
            (self.fps > 0, "fps must be positive"),
            (self.seed >= 0, "seed must be a non-negative integer"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"synth.{message}")

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of every frame."""
        return (self.frame_width, self.frame_height)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (what synthme.json records and params.yaml holds)."""
        return dataclasses.asdict(self)
