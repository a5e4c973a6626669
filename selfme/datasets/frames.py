"""Frame files of a clip: media suffixes, numbering, manifest-relative paths, the onset/apex lookup,
video decoding and colour detection (the one place for each).

Every dataset names frames with a trailing frame number (CASME II ``img46.jpg`` / ``reg_img46.jpg``,
SMIC ``image059757.bmp``, SAMM ``006_05562.jpg``, CAS(ME)^3 ``355.jpg``); the number is the one the
coding sheets use for onset, apex and offset.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np

#: Image files, in order of preference where one stem has several (``x.png`` before ``x.jpg``).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Video files that OpenCV's FFmpeg backend decodes.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm")
_TRAILING_NUMBER = re.compile(r"(\d+)$")


def frame_number(path: str | Path) -> int | None:
    """The trailing integer of a frame file's stem, or None when it has none."""
    match = _TRAILING_NUMBER.search(Path(path).stem)
    return int(match.group(1)) if match else None


def index_frames(folder: str | Path) -> dict[int, Path]:
    """Map frame number -> file for every image in ``folder`` (sorted by number).

    Two files with the same number (e.g. ``img5.jpg`` and ``img5.png``) are ambiguous: a ValueError.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"clip folder not found: {folder}")
    frames: dict[int, Path] = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        number = frame_number(path)
        if number is None:
            continue
        if number in frames:
            raise ValueError(f"two frame files share number {number} in {folder}: "
                             f"{frames[number].name}, {path.name}")
        frames[number] = path
    return dict(sorted(frames.items()))


def resolve_manifest_path(path: str | os.PathLike, manifest_path: str | os.PathLike | None) -> Path:
    """A path written in a manifest or index CSV: as written (absolute, or relative to the working
    directory) when it exists; else beside the manifest; else in the nearest folder above the manifest
    where it exists; else as written (so the caller's error names it)."""
    p = Path(path)
    if p.is_absolute() or p.exists() or manifest_path is None:
        return p
    folder = Path(manifest_path).parent
    for root in (folder, *folder.resolve().parents):
        if (root / p).exists():
            return root / p
    return p


def key_frame_files(frames_dir: str | os.PathLike, onset: int, apex: int, *, name: str,
                    manifest_path: str | os.PathLike | None = None) -> tuple[dict[int, Path], Path, Path]:
    """A clip's frames (number -> file) and its onset and apex files; FileNotFoundError naming the clip
    ``name`` and the missing frame numbers when either is absent."""
    frames = index_frames(resolve_manifest_path(frames_dir, manifest_path))
    missing = [n for n in (int(onset), int(apex)) if n not in frames]
    if missing:
        raise FileNotFoundError(f"{name}: frame(s) {missing} not in {frames_dir}")
    return frames, frames[int(onset)], frames[int(apex)]


def video_frames(path: str | os.PathLike, *, count: int | None = None) -> Iterator[np.ndarray]:
    """The frames of a video file in order (BGR uint8, as OpenCV decodes them; the first ``count`` only
    when given). Decoding is sequential, so frame i is exactly the i-th decoded frame. A ValueError when
    the file cannot be opened."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own stderr chatter off (set to override)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"cannot open the video {path} (unreadable, corrupt or an unsupported codec)")
        decoded = 0
        while count is None or decoded < count:
            ok, image = capture.read()
            if not ok or image is None:
                return
            decoded += 1
            yield image
    finally:
        capture.release()


def video_properties(path: str | os.PathLike) -> tuple[int, float | None]:
    """(frame count the container reports, at least 1; frames per second or None) of a video file."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"cannot open the video {path} (unreadable, corrupt or an unsupported codec)")
        return max(1, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))), float(capture.get(cv2.CAP_PROP_FPS)) or None
    finally:
        capture.release()


def detect_color(path: str | Path) -> str:
    """``gray`` for single-channel images or colour images whose channels are equal, else ``rgb``."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"unreadable or corrupt image: {path}")
    return "gray" if looks_gray(image) else "rgb"


def looks_gray(image: np.ndarray) -> bool:
    """True for a single-channel image or one whose colour channels are equal (within 2 levels)."""
    if image.ndim == 2 or image.shape[2] == 1:
        return True
    channels = image[:, :, :3].astype(np.float32)
    spread = np.abs(channels - channels[:, :, :1]).max()
    # JPEG chroma subsampling leaves tiny differences in grey images saved as colour.
    return bool(spread <= 2)
