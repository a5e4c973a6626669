"""Reading source frames strictly: a truncated file is an error, not a silently grey-padded image.

OpenCV decodes a JPEG cut off half-way without complaint (libjpeg pads the missing rows and prints
"Premature end of JPEG file" to stderr), so JPEG and PNG files are checked for their end markers
before decoding.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

JPEG_EOI = b"\xff\xd9"
PNG_IEND = b"IEND\xaeB`\x82"


class CorruptFrame(ValueError):
    """A frame file that cannot be read completely."""


def _check_complete(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in {".jpg", ".jpeg", ".png"}:
        return
    size = path.stat().st_size
    if size == 0:
        raise CorruptFrame(f"empty file: {path.name}")
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 64))
        tail = fh.read().rstrip(b"\x00\r\n ")
    if suffix == ".png" and not tail.endswith(PNG_IEND):
        raise CorruptFrame(f"truncated PNG (no IEND chunk at the end): {path.name}")
    if suffix in {".jpg", ".jpeg"} and not tail.endswith(JPEG_EOI):
        raise CorruptFrame(f"truncated JPEG (no end-of-image marker): {path.name}")


def read_frame(path: str | os.PathLike, *, gray: bool) -> np.ndarray:
    """Read a frame completely as uint8 grey [H, W] (``gray``) or RGB [H, W, 3]; CorruptFrame otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frame not found: {path}")
    _check_complete(path)
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise CorruptFrame(f"unreadable or corrupt image: {path.name}")
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
    return image if gray else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

