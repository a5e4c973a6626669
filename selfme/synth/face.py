"""Subjects for SynthME: one real public-domain portrait, varied per subject and placed in a lab frame.

The face texture is scikit-image's ``astronaut()`` (NASA portrait of Eileen Collins, public domain,
shipped inside the scikit-image wheel). Each subject is that face under a smooth identity warp (eye
distance, mouth width, chin length), an anisotropic scale (face width), a small in-plane rotation, an
optional mirror, a skin-tone/contrast change and a position, composited with a feathered head mask
over a synthetic lab background (a textured gradient wall) with a neck and shoulders. Landmarks are
carried through every transform, so the expression model knows where each facial region is.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from selfme.synth.fields import bump_field, pixel_grid

#: Facial landmarks of ``skimage.data.astronaut()`` in its 512x512 pixel coordinates (x, y).
#: Obtained once by hand: crops of the portrait were rendered at 6-8x zoom with a labelled 5-pixel
#: grid, the points were placed, redrawn on the zoom and corrected until they sat on the features.
#: Naming follows the anatomical convention of the 68-point iBUG scheme: ``_r`` is the subject's
#: right, which is the image's LEFT (smaller x); ``_l`` is the subject's left (image right).
PORTRAIT_LANDMARKS: dict[str, tuple[float, float]] = {
    "brow_r_outer": (192.0, 90.6), "brow_r_mid": (202.0, 89.3), "brow_r_inner": (212.0, 92.5),
    "brow_l_inner": (235.0, 92.0), "brow_l_mid": (247.5, 90.3), "brow_l_outer": (260.0, 93.8),
    "glabella": (223.5, 96.0),
    "eye_r_outer": (193.5, 101.5), "eye_r_inner": (210.5, 101.5), "eye_r_centre": (203.0, 101.0),
    "eye_r_upper": (203.0, 98.0), "eye_r_lower": (203.0, 104.0),
    "eye_l_inner": (236.5, 103.0), "eye_l_outer": (258.5, 103.0), "eye_l_centre": (246.0, 102.5),
    "eye_l_upper": (246.0, 99.7), "eye_l_lower": (246.0, 105.5),
    "nose_tip": (222.0, 129.0), "cheek_r": (196.0, 123.0), "cheek_l": (252.0, 123.0),
    "mouth_r": (203.8, 142.2), "mouth_l": (244.2, 140.8), "lip_upper": (223.5, 139.0),
    "lip_lower": (223.5, 152.0), "chin": (225.5, 177.0),
}

#: Face box (x0, y0, x1, y1) in portrait pixels: cheek to cheek, hairline to chin.
PORTRAIT_FACE_BOX = (176.0, 58.0, 272.0, 182.0)

#: Outline of the head (hair, cheeks, jaw, chin) in portrait pixels, picked on the same zoomed grid;
#: it excludes the flag, the helmet ring and the suit. Feathered into a soft mask before use.
PORTRAIT_HEAD_OUTLINE = (
    (230, 15), (262, 21), (287, 40), (301, 64), (304, 90), (297, 112), (284, 127), (274, 138),
    (272, 152), (266, 165), (257, 176), (244, 184), (226, 187), (208, 183), (196, 173),
    (189, 160), (184, 146), (172, 130), (158, 112), (151, 88), (154, 62), (169, 38), (196, 21),
)


def swap_side(name: str) -> str:
    """'eye_r_inner' <-> 'eye_l_inner' (used when a subject is mirrored)."""
    parts = name.split("_")
    return "_".join({"r": "l", "l": "r"}.get(p, p) for p in parts)


@functools.lru_cache(maxsize=1)
def load_portrait() -> np.ndarray:
    """The astronaut portrait as float32 RGB [512, 512, 3] in 0..255 (read-only, cached)."""
    import skimage.data

    image = skimage.data.astronaut().astype(np.float32)
    image.setflags(write=False)
    return image


@functools.lru_cache(maxsize=1)
def portrait_head_mask() -> np.ndarray:
    """Soft head mask of the portrait: the outline filled, eroded by 3 px and feathered by a Gaussian (sigma 2.5 px)."""
    mask = np.zeros((512, 512), dtype=np.float32)
    cv2.fillPoly(mask, [np.round(np.array(PORTRAIT_HEAD_OUTLINE) * 16).astype(np.int32)], 1.0,
                 lineType=cv2.LINE_AA, shift=4)
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    mask = cv2.GaussianBlur(mask, (0, 0), 2.5)
    mask.setflags(write=False)
    return mask


@dataclass(frozen=True, kw_only=True)
class Subject:
    """One synthetic subject: its neutral frame and where its facial features are in that frame."""

    index: int
    neutral: np.ndarray  #: float32 RGB [H, W, 3], 0..255: the subject in the empty lab frame.
    landmarks: dict[str, tuple[float, float]]  #: frame coordinates, ``_r`` = image left.
    face_box: tuple[float, float, float, float]  #: (x0, y0, x1, y1) in frame coordinates.
    iod: float  #: inter-ocular distance (eye centres) in frame pixels.
    axes: np.ndarray  #: [2, 2] rows: unit vector across the face (to image right), and down it.
    identity: dict[str, Any] = field(default_factory=dict)  #: sampled parameters, for the record.

    def point(self, name: str) -> np.ndarray:
        """A landmark's frame coordinates as a float32 (x, y) array."""
        return np.asarray(self.landmarks[name], dtype=np.float32)


def _identity_bumps(params: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward identity warp q = u + B(u) (portrait coordinates) as Gaussian bumps.

    A bump of vector +d at the subject's right eye samples the portrait d to the right, i.e. moves
    the eye d to the left (outward): positive ``eye_spread`` widens the eyes, ``mouth_width`` the
    mouth, ``chin_length`` lowers the chin.
    """
    lm = PORTRAIT_LANDMARKS
    e, m, c = params["eye_spread"], params["mouth_width"], params["chin_length"]
    rows = [
        (lm["eye_r_centre"], (e, 0.0), 12.0), (lm["eye_l_centre"], (-e, 0.0), 12.0),
        ((lm["brow_r_mid"][0], lm["brow_r_mid"][1] - 2), (0.8 * e, 0.0), 12.0),
        ((lm["brow_l_mid"][0], lm["brow_l_mid"][1] - 2), (-0.8 * e, 0.0), 12.0),
        (lm["mouth_r"], (m, 0.0), 8.0), (lm["mouth_l"], (-m, 0.0), 8.0),
        (lm["chin"], (0.0, -c), 18.0),
    ]
    centres = np.array([r[0] for r in rows], np.float32)
    vectors = np.array([r[1] for r in rows], np.float32)
    sigmas = np.array([r[2] for r in rows], np.float32)
    return centres, vectors, sigmas


def _background(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A lab wall: smooth tinted gradient plus low-frequency blotches and fine grain."""
    level = rng.uniform(150, 215)
    tint = rng.uniform(-10, 10, size=3)
    angle = rng.uniform(0, 2 * math.pi)
    slope = rng.uniform(0.05, 0.15)
    grid = pixel_grid(width, height)
    ramp = ((grid[..., 0] - width / 2) * math.cos(angle) + (grid[..., 1] - height / 2) * math.sin(angle))
    ramp /= max(width, height) / 2
    wall = (level + tint)[None, None, :] * (1.0 + slope * ramp)[..., None]
    blotch = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0),
                              max(width, height) / 25)
    blotch *= 4.0 / max(float(blotch.std()), 1e-6)
    grain = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 0.8)
    wall = wall + (blotch + 1.5 * grain / max(float(grain.std()), 1e-6))[..., None]
    return wall.astype(np.float32), {"wall_level": level, "wall_slope": slope}


def _soft_ellipse(grid: np.ndarray, centre, axes, feather: float) -> np.ndarray:
    d = np.sqrt(((grid[..., 0] - centre[0]) / axes[0]) ** 2 + ((grid[..., 1] - centre[1]) / axes[1]) ** 2)
    return np.clip((1.0 - d) * min(axes) / feather + 0.5, 0.0, 1.0).astype(np.float32)


def _sample_identity(width: int, height: int, rng: np.random.Generator) -> dict[str, Any]:
    """A subject's face shape, pose in the frame and colouring (13 draws, in this order)."""
    return {
        "scale_factor": float(rng.uniform(0.92, 1.08)), "face_width": float(rng.uniform(0.92, 1.08)),
        "rotation_deg": float(rng.uniform(-4.0, 4.0)), "mirrored": bool(rng.random() < 0.5),
        "offset_x": float(rng.uniform(-0.05, 0.05) * width), "offset_y": float(rng.uniform(-0.03, 0.03) * height),
        "eye_spread": float(rng.uniform(-2.5, 2.5)), "mouth_width": float(rng.uniform(-2.0, 2.0)),
        "chin_length": float(rng.uniform(-3.0, 3.0)), "warmth": float(rng.uniform(-1.0, 1.0)),
        "brightness": float(rng.uniform(0.85, 1.1)), "contrast": float(rng.uniform(0.85, 1.15)),
        "shading": float(rng.uniform(-0.08, 0.08)),
    }


@dataclass(frozen=True)
class _Placement:
    """The similarity frame = lin @ (u - c_p) + c_f from portrait pixels u to frame pixels, plus the
    identity bumps B of the portrait (q = u + B(u) for a portrait point q)."""

    lin: np.ndarray
    c_p: np.ndarray
    c_f: np.ndarray
    scale: float
    sx: float
    bumps: tuple[np.ndarray, np.ndarray, np.ndarray]


def _placement(params: dict[str, Any], width: int, height: int, face_height_px: float) -> _Placement:
    box = PORTRAIT_FACE_BOX
    scale = face_height_px / (box[3] - box[1]) * params["scale_factor"]
    sx = scale * params["face_width"] * (-1.0 if params["mirrored"] else 1.0)
    theta = math.radians(params["rotation_deg"])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], np.float32)
    lin = rot @ np.diag([sx, scale]).astype(np.float32)
    c_p = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)
    c_f = np.array([width / 2 + params["offset_x"], 0.52 * height + params["offset_y"]], np.float32)
    return _Placement(lin, c_p, c_f, scale, sx, _identity_bumps(params))


def _frame_landmarks(place: _Placement, mirrored: bool) -> dict[str, tuple[float, float]]:
    """Forward map of the portrait landmarks: solve u + B(u) = q, then y = lin (u - c_p) + c_f."""
    names = list(PORTRAIT_LANDMARKS)
    q = np.array([PORTRAIT_LANDMARKS[n] for n in names], np.float32)
    u = q.copy()
    for _ in range(10):
        u = q - bump_field(u, *place.bumps)
    y = (u - place.c_p) @ place.lin.T + place.c_f
    if mirrored:
        names = [swap_side(n) for n in names]
    return {n: (float(p[0]), float(p[1])) for n, p in zip(names, y)}


def _warp_head(place: _Placement, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward map of every frame pixel into the portrait (u = lin^-1 (y - c_f) + c_p, q = u + B(u)):
    the head image and its soft mask [H, W, 1]."""
    u_grid = (grid - place.c_f) @ np.linalg.inv(place.lin).T + place.c_p
    q_grid = (u_grid + bump_field(u_grid, *place.bumps)).astype(np.float32)
    portrait = load_portrait()
    if place.scale < 0.9:  # anti-alias before shrinking
        portrait = cv2.GaussianBlur(portrait, (0, 0), 0.5 * math.sqrt(1.0 / place.scale ** 2 - 1.0))
    head = cv2.remap(portrait, q_grid[..., 0], q_grid[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.remap(portrait_head_mask(), q_grid[..., 0], q_grid[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)[..., None]
    return head, mask


def _colour_head(head: np.ndarray, params: dict[str, Any], grid: np.ndarray, centre_x: float, half_w: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Skin tone, contrast, brightness and a left-right shading ramp on the head."""
    gains = np.array([1 + 0.08 * params["warmth"], 1.0, 1 - 0.08 * params["warmth"]], np.float32)
    gains *= rng.uniform(0.97, 1.03, size=3).astype(np.float32) * params["brightness"]
    across = (grid[..., 0] - centre_x) / max(half_w, 1.0)
    head = ((head - 128.0) * params["contrast"] + 128.0) * gains
    return head * (1.0 + params["shading"] * np.clip(across, -1.5, 1.5))[..., None]


def _compose(head: np.ndarray, mask: np.ndarray, wall: np.ndarray, grid: np.ndarray, *, chin, half: np.ndarray,
             face_box: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """The neutral frame: the wall, a neck in the head's median skin tone, clothed shoulders, the head."""
    height, width = wall.shape[:2]
    chin = np.asarray(chin, np.float32)
    face_w, face_h = 2 * half[0], 2 * half[1]
    cloth = rng.uniform(20, 140, size=3).astype(np.float32)
    x0, y0, x1, y1 = (int(round(v)) for v in face_box)
    skin = np.median(head[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)].reshape(-1, 3), axis=0)
    neck_half = 0.28 * face_w
    neck = _soft_ellipse(grid, (chin[0], chin[1] + 0.22 * face_h), (neck_half, 0.32 * face_h), 2.0)
    side = np.clip(np.abs(grid[..., 0] - chin[0]) / neck_half, 0, 1)
    neck_shade = (0.62 + 0.2 * np.clip((grid[..., 1] - chin[1]) / (0.25 * face_h), 0, 1)) * (1 - 0.25 * side ** 2)
    frame = wall * (1 - neck[..., None]) + skin * neck_shade[..., None] * neck[..., None]
    shoulders = _soft_ellipse(grid, (chin[0], chin[1] + 0.58 * face_h), (1.1 * face_w, 0.4 * face_h), 2.0)
    frame = frame * (1 - shoulders[..., None]) + cloth * shoulders[..., None]
    frame = frame * (1 - mask) + head * mask
    return np.clip(frame, 0, 255).astype(np.float32)


def make_subject(index: int, *, frame_size: tuple[int, int], face_height_px: float,
                 rng: np.random.Generator) -> Subject:
    """Sample one subject's identity and render its neutral frame (see the module docstring)."""
    width, height = frame_size
    box = PORTRAIT_FACE_BOX
    params = _sample_identity(width, height, rng)
    place = _placement(params, width, height, face_height_px)
    landmarks = _frame_landmarks(place, params["mirrored"])
    half = np.array([(box[2] - box[0]) / 2 * abs(place.sx), (box[3] - box[1]) / 2 * place.scale], np.float32)
    box_centre = place.c_f  # the portrait box centre c_p lands on c_f
    face_box = tuple(float(v) for v in (*(box_centre - half), *(box_centre + half)))
    grid = pixel_grid(width, height)
    head, mask = _warp_head(place, grid)
    head = _colour_head(head, params, grid, float(box_centre[0]), float(half[0]), rng)
    wall, wall_params = _background(width, height, rng)
    params.update(wall_params)
    neutral = _compose(head, mask, wall, grid, chin=landmarks["chin"], half=half, face_box=face_box, rng=rng)
    ex = np.asarray(landmarks["eye_l_centre"], np.float32) - np.asarray(landmarks["eye_r_centre"], np.float32)
    iod = float(np.linalg.norm(ex))
    ex /= iod
    axes = np.array([ex, [-ex[1], ex[0]]], np.float32)
    params["scale_px_per_portrait_px"] = float(place.scale)
    return Subject(index=index, neutral=neutral, landmarks=landmarks, face_box=face_box, iod=iod,
                   axes=axes, identity=params)
