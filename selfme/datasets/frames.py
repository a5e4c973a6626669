"""Frame files of a clip folder: numbering, lookup and colour detection.

Every dataset names frames with a trailing frame number (CASME II ``img46.jpg`` / ``reg_img46.jpg``,
SMIC ``image059757.bmp``, SAMM ``006_05562.jpg``, CAS(ME)^3 ``355.jpg``); the number is the one the
coding sheets use for onset, apex and offset.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
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
