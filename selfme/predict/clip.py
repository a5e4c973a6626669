"""A new clip for prediction: reading it (a folder of numbered frames or a video file), checking the key
frames, and cropping the face exactly as the crop stage does.

Frame numbers: in a folder, the trailing number of each file name (``img46.jpg`` is frame 46, as the
datasets' coding sheets count); in a video, the position of the decoded frame counted from 0 (the first
frame is frame 0). Video frames are decoded with ``cv2.VideoCapture`` into lossless PNGs in a work
folder. The crop is the crop stage's own per-clip function (:class:`selfme.face.clip.ClipCropper`):
landmarks on the onset frame, one similarity transform for every frame from the onset to the last.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2

from selfme.datasets.frames import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, detect_color, index_frames, video_frames,
                                    video_properties)
from selfme.face.clip import ClipCropper, ClipJob
from selfme.face.config import CropConfig
from selfme.face.landmarks import LandmarkBackend


@dataclass(frozen=True, kw_only=True)
class ClipSource:
    """A clip's frames on disk: frame number -> file, in order; ``kind`` is ``folder`` or ``video``."""

    path: Path
    kind: str
    frames: dict[int, Path]
    fps: float | None = None

    @property
    def name(self) -> str:
        return self.path.stem if self.kind == "video" else self.path.name


@dataclass(frozen=True, kw_only=True)
class CroppedClip:
    """Aligned crops (frame number -> file, onset..last), the crop's manifest-style row and warnings."""

    frames: dict[int, Path]
    row: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def decode_video(path: Path, folder: Path) -> tuple[dict[int, Path], float | None]:
    """Every frame of a video as ``folder/frame<N>.png`` (N from 0); a ValueError when none decodes."""
    fps = video_properties(path)[1]
    folder.mkdir(parents=True, exist_ok=True)
    frames: dict[int, Path] = {}
    for image in video_frames(path):
        out = folder / f"frame{len(frames)}.png"
        if not cv2.imwrite(str(out), image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f"could not write the decoded frame {out}")
        frames[len(frames)] = out
    if not frames:
        raise ValueError(f"no frame could be decoded from the video {path} (unreadable, corrupt or empty)")
    return frames, fps


def read_clip(path: str | os.PathLike, *, workdir: str | os.PathLike) -> ClipSource:
    """A folder of numbered frames or a video file (decoded into ``workdir``)."""
    path = Path(path)
    if path.is_dir():
        return ClipSource(path=path, kind="folder", frames=index_frames(path))
    if not path.exists():
        raise FileNotFoundError(f"clip not found: {path} (a folder of numbered frames or a video file)")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        raise ValueError(f"{path} is a single image: a clip has at least two frames (give their folder)")
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"{path} is neither a folder of frames nor a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    frames, fps = decode_video(path, Path(workdir) / "video_frames")
    return ClipSource(path=path, kind="video", frames=frames, fps=fps)


def key_frames(source: ClipSource, *, onset: int | None, apex: int | None) -> tuple[int, int | None]:
    """Check (and default) the onset and apex numbers: onset defaults to the first frame; the apex, when
    given, must come after it. Returns (onset, apex or None for spotting)."""
    numbers = list(source.frames)
    unit = "video frames are numbered from 0" if source.kind == "video" else "numbers from the file names"
    if len(numbers) < 2:
        raise ValueError(f"{source.path} has {len(numbers)} frame(s): a clip needs at least two (onset and apex)")
    span = f"frames {numbers[0]}..{numbers[-1]}; {unit}"
    onset = numbers[0] if onset is None else int(onset)
    if onset not in source.frames:
        raise ValueError(f"onset {onset} is not a frame of {source.path} ({span})")
    if apex is None:
        if onset == numbers[-1]:
            raise ValueError(f"the onset {onset} is the last frame of {source.path}: no later frame to spot "
                             f"the apex in ({span})")
        return onset, None
    apex = int(apex)
    if apex not in source.frames:
        raise ValueError(f"apex {apex} is not a frame of {source.path} ({span})")
    if apex <= onset:
        raise ValueError(f"the onset ({onset}) must come before the apex ({apex})")
    return onset, apex


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Mute a logger's warnings (the cropper logs a failure that we turn into the command's error)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def crop_clip(source: ClipSource, *, onset: int, apex: int | None, config: CropConfig,
              backend: Callable[[], LandmarkBackend], out_dir: str | os.PathLike) -> CroppedClip:
    """Crop frames onset..last into ``out_dir`` with the crop stage's per-clip function; a ValueError
    with the cropper's reason (no face, corrupt or differently sized frames) when it cannot."""
    numbers = [n for n in source.frames if n >= onset]
    folder = Path(next(iter(source.frames.values()))).parent
    row = {"dataset": "predict", "subject": "predict", "clip": source.name, "onset": onset,
           "apex": apex if apex is not None else numbers[-1], "offset": numbers[-1],
           "color": detect_color(source.frames[onset])}
    config = replace(config, frames="clip", workers=config.workers or min(4, os.cpu_count() or 1))
    job = ClipJob(row=row, frames_dir=folder, out_dir=Path(out_dir))
    with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="crop") as pool, _quiet("selfme.face.clip"):
        result = ClipCropper(config=config, backend_factory=backend, pool=pool).crop(job, force=True)
    failures = [p for p in result.problems if p.severity == "failure"]
    if result.status == "failed" or result.row is None:
        detail = failures[0].detail if failures else "the face could not be cropped"
        raise ValueError(f"{source.path}: {detail}")
    return CroppedClip(frames={n: p for n, p in index_frames(out_dir).items() if n >= onset}, row=result.row,
                       warnings=[p.detail for p in result.problems])
