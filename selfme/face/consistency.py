"""Frames that disagree with both of their neighbours: damaged data that still decodes.

A JPEG whose entropy-coded bytes are damaged, its end marker intact, decodes without an error through
OpenCV and Pillow (libjpeg at most prints a warning to stderr, and for many damages not even that):
from the damaged block on, the picture turns to garbage, a grey fill or a colour-shifted band. No
decoder call tells, but the clip does: at 30-200 fps consecutive frames are nearly alike, so a frame
with values that neither of its neighbours has anywhere nearby is not a frame of the clip.

On thumbnails (1/``THUMB_SCALE`` size, area-averaged, so sensor and JPEG noise average out) a pixel is
*inconsistent* when, in some channel, its value lies more than ``DIFF_LEVELS`` grey levels outside the
range of the two reference frames' values within ``WINDOW`` thumbnail pixels of it (a min / max filter):
motion up to about ``WINDOW`` x ``THUMB_SCALE`` source pixels per frame only moves values around, damage
makes new ones. The references of an interior frame are its two neighbours, of the first frame the next
two, of the last the previous two. A frame is an outlier when more than ``area`` of its pixels are
inconsistent (``crop.corrupt_area``, 1% by default).

Measured: on SynthME (47 clips, 1128 frames, with blinks, flicker and head jitter) the largest share is
0.02%; a real face (scikit-image's astronaut, 300 px) moving steadily by 8 / 12 / 16 px a frame gives
0.75% / 0.98% / 1.8%, so head motion beyond about 12 px a frame at that size is taken for damage. Of
1152 damaged copies of SynthME frames (16 random bytes, 64 zero bytes or one flipped bit at 12 places
through the file, in the first, 8th, 13th and last frame of 8 clips), 806 are caught; of the 346 that
pass, 335 have under 1% of their pixels changed by more than 20 grey levels (most are bit flips that
change nothing) and none more than 8.2%. Limits: two adjacent damaged frames can hide each other, and a
clip of fewer than three frames is not checked.
"""

from __future__ import annotations

import cv2
import numpy as np

DIFF_LEVELS = 12.0
WINDOW = 3
THUMB_SCALE = 4


def thumbnail(image: np.ndarray) -> np.ndarray:
    """The image at 1/``THUMB_SCALE`` size (area-averaged), float32, channels kept."""
    h, w = image.shape[:2]
    size = (max(1, w // THUMB_SCALE), max(1, h // THUMB_SCALE))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def references(index: int, count: int) -> tuple[int, int] | None:
    """The two frames (indices into a clip of ``count``) a frame is compared with; None below 3 frames."""
    if count < 3:
        return None
    if index == 0:
        return 1, 2
    if index == count - 1:
        return count - 2, count - 3
    return index - 1, index + 1


def inconsistent_fraction(frame: np.ndarray, ref_a: np.ndarray, ref_b: np.ndarray) -> float:
    """Share of ``frame``'s thumbnail pixels outside the references' nearby range (module docstring)."""
    kernel = np.ones((2 * WINDOW + 1, 2 * WINDOW + 1), np.uint8)
    low = cv2.erode(np.minimum(ref_a, ref_b), kernel)
    high = cv2.dilate(np.maximum(ref_a, ref_b), kernel)
    outside = np.maximum(low - frame, frame - high)
    if outside.ndim == 3:
        outside = outside.max(axis=2)
    return float((outside > DIFF_LEVELS).mean())


def outlier_frames(thumbs: dict[int, np.ndarray], *, area: float) -> dict[int, float]:
    """Frame number -> inconsistent share, for the frames of ``thumbs`` above ``area`` (0: none checked)."""
    numbers = sorted(thumbs)
    found: dict[int, float] = {}
    if area <= 0:
        return found
    for i, n in enumerate(numbers):
        refs = references(i, len(numbers))
        if refs is None:
            break
        fraction = inconsistent_fraction(thumbs[n], thumbs[numbers[refs[0]]], thumbs[numbers[refs[1]]])
        if fraction > area:
            found[n] = fraction
    return found


def describe(name: str, fraction: float) -> str:
    """The failures.csv detail for an outlier frame."""
    return (f"{name} decodes, but {fraction:.1%} of it disagrees with both neighbouring frames "
            f"(damaged image data)")
