"""One frame of a clip under the clip's fixed crop: read, checked against the onset frame's size and colour
mode, warped and written (``selfme.face.clip.ClipCropper`` runs it on its pool threads)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from selfme.datasets.frames import looks_gray
from selfme.face.align import warp
from selfme.face.config import CropConfig
from selfme.face.consistency import thumbnail
from selfme.face.job import output_name
from selfme.face.readers import read_frame


class FrameSizeError(ValueError):
    """A frame whose size differs from the onset frame's."""


class FrameColorError(ValueError):
    """A frame of a colour clip whose colour mode differs from the onset's (a grey frame read as colour
    is a frame unlike the others, and the motion to it is spurious)."""


def warp_frame(path: Path, folder: Path, matrix: np.ndarray, shape: tuple[int, int], gray: bool,
               onset_gray: bool, *, config: CropConfig) -> tuple[str, np.ndarray]:
    """Read, check size and colour mode (those of the onset), warp and write one frame (runs on a pool
    thread; OpenCV releases the GIL); returns the written name and the source's thumbnail."""
    image = read_frame(path, gray=gray)
    if image.shape[:2] != shape:
        raise FrameSizeError(f"{path.name} is {image.shape[1]}x{image.shape[0]}")
    thumb = thumbnail(image)
    if not gray and looks_gray(thumb) != onset_gray:
        modes = ("grey", "in colour") if onset_gray else ("in colour", "grey")
        raise FrameColorError(f"{path.name} is {modes[1]}, the onset frame {modes[0]}")
    crop = warp(image, matrix, config.size, border=config.border)
    if gray and config.gray == "replicate":
        crop = np.repeat(crop[:, :, None], 3, axis=2)
    name = output_name(path, config.image_format)
    suffix = Path(name).suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(config.jpeg_quality)] if suffix in {".jpg", ".jpeg"} else []
    ok, buf = cv2.imencode(suffix, crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"could not encode {name}")
    (folder / name).write_bytes(buf.tobytes())
    return name, thumb
