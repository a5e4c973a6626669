"""Helpers shared by the face crop tests: tiny manifests, test faces, a fixed-landmark backend."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd

from selfme.datasets.manifest import MANIFEST_COLUMNS
from selfme.face.landmarks import Face


def astronaut() -> np.ndarray:
    """scikit-image's public-domain portrait (RGB 512x512): a real frontal face available offline."""
    from skimage import data

    return data.astronaut()


def save(path: Path, image: np.ndarray, *, quality: int = 97) -> Path:
    """Write an RGB or grey uint8 image (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    assert cv2.imwrite(str(path), bgr, params)
    return path


def manifest_row(subject: str, clip: str, frames_dir: Path, *, onset: int, apex: int, offset: int,
                 color: str = "rgb", dataset: str = "testset") -> dict:
    return {"dataset": dataset, "subject": subject, "clip": clip, "label": "positive", "label_id": 1,
            "source_label": "happiness", "onset": onset, "apex": apex, "offset": offset,
            "apex_source": "annotated", "frames_dir": frames_dir.as_posix(),
            "n_frames": offset - onset + 1, "fps": 200.0, "color": color}


def manifest(rows: Sequence[dict]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=MANIFEST_COLUMNS)


def write_clip(root: Path, subject: str, clip: str, frames: Sequence[np.ndarray], *, first: int = 1,
               suffix: str = ".jpg", color: str = "rgb") -> dict:
    """Write frames as ``img<N><suffix>`` under root/subject/clip and return the manifest row."""
    folder = root / subject / clip
    for i, frame in enumerate(frames):
        save(folder / f"img{first + i}{suffix}", frame)
    last = first + len(frames) - 1
    return manifest_row(subject, clip, folder, onset=first, apex=(first + last) // 2, offset=last, color=color)


def landmarks_with_eyes(left: Sequence[float], right: Sequence[float]) -> np.ndarray:
    """68 landmarks whose eye points (36-41, 42-47) average exactly to ``left`` and ``right``."""
    pts = np.zeros((68, 2))
    ring = np.array([[-3, 0], [-1, -1.5], [1, -1.5], [3, 0], [1, 1.5], [-1, 1.5]], dtype=np.float64)
    pts[36:42] = np.asarray(left, dtype=np.float64) + ring
    pts[42:48] = np.asarray(right, dtype=np.float64) + ring
    return pts


class FixedEyes:
    """A landmark backend that 'finds' one face with the same eyes in every image (exact geometry tests);
    it counts the images it was asked about."""

    name = "fixed"

    def __init__(self, left: Sequence[float], right: Sequence[float]) -> None:
        self.landmarks = landmarks_with_eyes(left, right)
        self.images_seen = 0

    def detect(self, images):
        self.images_seen += len(images)
        return [[Face(box=(0.0, 0.0, 10.0, 10.0), score=1.0, landmarks=self.landmarks.copy())] for _ in images]

    def fit(self, images, box):
        self.images_seen += len(images)
        return [self.landmarks.copy() for _ in images]


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (so warps and shifts can be compared pixel by pixel)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, size=(height // 4 + 2, width // 4 + 2, 3)).astype(np.float32)
    big = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(cv2.GaussianBlur(big, (0, 0), 2.0), 0, 255).astype(np.uint8)


_DLIB = []


def dlib_backend():
    """One dlib backend for the whole test session (loading the 68-point model takes about 0.5 s)."""
    if not _DLIB:
        from selfme.face.backends import DlibBackend

        _DLIB.append(DlibBackend())
    return _DLIB[0]
