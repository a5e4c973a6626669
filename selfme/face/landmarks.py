"""Faces and 68-point landmarks: the common result type of every backend, and what the crop uses of it.

All backends report the iBUG 68-point layout (the one dlib's shape predictor and face_alignment's
2DFAN4 share): points 36-41 outline the image-left eye (the subject's right eye), 42-47 the image-right
eye. The crop needs only the two eye centres, the means of those six points each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

N_LANDMARKS = 68
LEFT_EYE = slice(36, 42)   # image-left eye (subject's right)
RIGHT_EYE = slice(42, 48)  # image-right eye (subject's left)


@dataclass(frozen=True, kw_only=True)
class Face:
    """One detected face: box (x0, y0, x1, y1) and score from the detector, [68, 2] landmarks (x, y)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        if self.landmarks.shape != (N_LANDMARKS, 2):
            raise ValueError(f"expected [68, 2] landmarks, got {list(self.landmarks.shape)}")

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    def eyes(self) -> np.ndarray:
        """[[x, y] image-left eye centre, [x, y] image-right eye centre]."""
        return eye_centres(self.landmarks)


class LandmarkBackend(Protocol):
    """What the crop driver needs from a landmark backend."""

    name: str

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """All faces in each image (uint8 RGB [H, W, 3] or grey [H, W]), in no particular order."""
        ...

    def fit(self, images: Sequence[np.ndarray], box: tuple[float, float, float, float]) -> list[np.ndarray]:
        """[68, 2] landmarks of the face inside ``box`` in each image (no detection: tracking a face
        whose box is known, e.g. the onset's box on later frames of the same clip)."""
        ...


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres of 68-point landmarks: means of points 36-41 and 42-47, as [[x, y], [x, y]]."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return np.stack([pts[LEFT_EYE].mean(axis=0), pts[RIGHT_EYE].mean(axis=0)])


def largest_face(faces: Sequence[Face]) -> Face:
    """The face with the largest box (the subject, when a second face or a face-like pattern is seen)."""
    if not faces:
        raise ValueError("no face to choose from")
    return max(faces, key=lambda f: (f.area, f.score))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 RGB view of a grey or RGB image (grey is replicated to three channels)."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image


def detection_scale(shape: tuple[int, ...], max_side: int | None) -> float:
    """Factor (<= 1) by which an image is shrunk before face detection so its longer side is at most
    ``max_side`` (None or 0: no shrinking). Landmarks are always fitted on the full-resolution image."""
    if not max_side:
        return 1.0
    longest = max(shape[0], shape[1])
    return min(1.0, max_side / longest)
