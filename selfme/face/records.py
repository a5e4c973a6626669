"""What cropping a clip reports: problems (failures and warnings), per-clip results, and the columns the
crop stage adds to the manifest and writes to failures.csv."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Columns of failures.csv: one row per problem; severity ``failure`` drops the clip, ``warning`` keeps it.
FAILURE_COLUMNS = ["subject", "clip", "problem", "detail", "severity"]

#: Columns the crop stage appends to the manifest contract's columns.
EXTRA_COLUMNS = ["source_frames_dir", "source_color", "crop_size", "backend", "n_faces", "face_score",
                 "eye_left_x", "eye_left_y", "eye_right_x", "eye_right_y", "eye_drift_px", "transform",
                 "landmarks", "ground_truth"]

# Problem names (the ``problem`` column).
MISSING_CLIP_FOLDER = "missing_clip_folder"
MISSING_FRAME = "missing_frame"
AMBIGUOUS_FRAMES = "ambiguous_frames"
CORRUPT_FRAME = "corrupt_frame"
COLOR_MISMATCH = "color_mismatch"
FRAME_SIZE_MISMATCH = "frame_size_mismatch"
NO_FACE = "no_face"
SEVERAL_FACES = "several_faces"
EYE_DRIFT = "eye_drift"
GROUND_TRUTH = "ground_truth"
ALIGNMENT = "alignment"


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One entry of failures.csv."""

    subject: str
    clip: str
    problem: str
    detail: str
    severity: str = "failure"

    def as_row(self) -> dict[str, str]:
        return asdict(self)


class ClipFailed(Exception):
    """A clip that cannot be cropped; ``problem`` is one of the problem names above."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem = problem
        self.detail = detail


@dataclass(kw_only=True)
class ClipResult:
    """Outcome of one clip: ``cropped`` (written now), ``skipped`` (up to date) or ``failed``."""

    status: str
    row: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)
    frames_written: int = 0
    frames_in_output: int = 0
    ground_truth_written: bool = False
