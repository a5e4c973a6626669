"""Rendering SynthME clips: temporal profile, nuisances, backward-warp rendering and ground truth.

Model. A face point p (frame coordinates of the subject's neutral face) is displayed in frame t at
y = p + s_t E(p) + j_t, where E is the clip's apex expression field, s_t its temporal profile
(0 at onset, 1 at apex) and j_t the global head/camera jitter. Frame t is rendered by backward
mapping: for each display pixel y, p solves p = (y - j_t) - s_t E(p) (fixed-point iteration), and
the subject's face-space image (the neutral frame, with a blink drawn on it when one is under way)
is sampled at p. Flicker (a global gain) and sensor noise are applied after the warp.

Ground truth (OpenCV optical-flow convention, onset(x) ~= apex(x + F(x))): with p the face point
shown at x in the onset frame, F(x) = p + s_apex E(p) + j_apex - x. F includes the jitter
difference; the expression-only part is F(x) - (j_apex - j_onset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from selfme.synth.face import Subject
from selfme.synth.fields import invert_displacement, sample_field

FIXED_POINT_ITERATIONS = 6


@dataclass(frozen=True, kw_only=True)
class Timeline:
    """Per-frame scalars of one clip (index 0 = onset, the last index = offset)."""

    profile: np.ndarray  #: [T] expression level s_t: 0 at onset, 1 at apex.
    apex_index: int
    jitter: np.ndarray  #: [T, 2] global translation j_t (pixels).
    blink: np.ndarray  #: [T] eyelid closure in [0, 1] (0 = open).
    gain: np.ndarray  #: [T] illumination gain (1 = none).


def temporal_profile(n_frames: int, apex_index: int, end_level: float) -> np.ndarray:
    """Raised-cosine rise 0 -> 1 from onset to apex, raised-cosine decay 1 -> ``end_level`` to offset."""
    t = np.arange(n_frames, dtype=np.float64)
    rise = 0.5 * (1 - np.cos(np.pi * t / apex_index))
    tail = max(n_frames - 1 - apex_index, 1)
    decay = end_level + (1 - end_level) * 0.5 * (1 + np.cos(np.pi * (t - apex_index) / tail))
    return np.where(t <= apex_index, rise, decay).astype(np.float32)


def jitter_track(n_frames: int, sd: float, rng: np.random.Generator, *, rho: float = 0.8) -> np.ndarray:
    """Mean-reverting random walk (AR(1), coefficient ``rho``) with stationary s.d. ``sd`` per axis."""
    track = np.zeros((n_frames, 2), np.float64)
    if sd <= 0:
        return track.astype(np.float32)
    track[0] = rng.normal(0, sd, 2)
    step = sd * math.sqrt(1 - rho ** 2)
    for t in range(1, n_frames):
        track[t] = rho * track[t - 1] + rng.normal(0, step, 2)
    return track.astype(np.float32)


def blink_track(n_frames: int, apex_index: int, prob: float, rng: np.random.Generator) -> np.ndarray:
    """With probability ``prob`` one blink of 5-8 frames (sin^2 closure, peak 0.7-1) that covers
    neither the onset (index 0) nor the apex frame; zeros when it does not fit."""
    closure = np.zeros(n_frames, np.float32)
    if prob <= 0 or rng.random() >= prob:
        return closure
    length = int(rng.integers(5, 9))
    starts = [s for s in range(1, n_frames - length + 1) if not s <= apex_index < s + length]
    if not starts:
        return closure
    start = starts[int(rng.integers(len(starts)))]
    peak = rng.uniform(0.7, 1.0)
    k = np.arange(length)
    closure[start:start + length] = peak * np.sin(np.pi * (k + 1) / (length + 1)) ** 2
    return closure


def flicker_gains(n_frames: int, amplitude: float, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Global illumination gain 1 + a sin(2 pi f t / fps + phase), f uniform in 5-60 Hz."""
    if amplitude <= 0:
        return np.ones(n_frames, np.float32)
    freq, phase = rng.uniform(5, 60), rng.uniform(0, 2 * np.pi)
    t = np.arange(n_frames)
    return (1 + amplitude * np.sin(2 * np.pi * freq * t / fps + phase)).astype(np.float32)


def sample_timeline(n_frames: int, *, jitter_px: float, blink_prob: float, flicker: float, fps: float,
                    rng: np.random.Generator) -> Timeline:
    """Apex at a random 30-65% of the clip; the profile decays to 0-0.3 of the apex by the offset."""
    apex = int(np.clip(round(rng.uniform(0.3, 0.65) * (n_frames - 1)), 2, n_frames - 2))
    profile = temporal_profile(n_frames, apex, float(rng.uniform(0.0, 0.3)))
    return Timeline(profile=profile, apex_index=apex, jitter=jitter_track(n_frames, jitter_px, rng),
                    blink=blink_track(n_frames, apex, blink_prob, rng),
                    gain=flicker_gains(n_frames, flicker, fps, rng))


@dataclass(frozen=True)
class _Eye:
    centre: np.ndarray
    half_width: float
    top: float  # along the face's down axis, relative to centre
    bottom: float


class BlinkPainter:
    """Draws a closing upper eyelid on a subject's face-space image.

    The lid is skin sampled from just above the eye (shifted down over it), blurred and slightly
    shaded, with a dark lash line at its edge; at closure c its edge has descended a fraction c from
    the top of an ellipse around the eye to just below the lower lid.
    """

    def __init__(self, subject: Subject, grid: np.ndarray) -> None:
        self.subject, self.grid = subject, grid
        ex, ey = subject.axes
        self.eyes = []
        for s in ("r", "l"):
            c = subject.point(f"eye_{s}_centre")
            half = 0.5 * float(abs((subject.point(f"eye_{s}_outer") - subject.point(f"eye_{s}_inner")) @ ex))
            top = float((subject.point(f"eye_{s}_upper") - c) @ ey) - 0.6
            bottom = float((subject.point(f"eye_{s}_lower") - c) @ ey) + 0.6
            self.eyes.append(_Eye(c, 1.2 * half, top, bottom))
        height = np.mean([e.bottom - e.top for e in self.eyes])
        shift = (1.5 * height * ey).astype(np.float32)
        lid = sample_field(subject.neutral, grid - shift)
        self.lid = cv2.GaussianBlur(lid, (0, 0), 1.0) * np.float32(0.96)

    def paint(self, image: np.ndarray, closure: float) -> np.ndarray:
        """``image`` (face space, float32 RGB) with both upper lids closed by ``closure`` in [0, 1]."""
        if closure <= 0:
            return image
        ex, ey = self.subject.axes
        out = image.copy()
        for eye in self.eyes:
            rel = self.grid - eye.centre
            a, b = rel @ ex, rel @ ey
            mid, half_h = 0.5 * (eye.top + eye.bottom), 0.65 * (eye.bottom - eye.top)
            inside = np.clip((1 - np.sqrt((a / eye.half_width) ** 2 + ((b - mid) / half_h) ** 2)) * 4, 0, 1)
            edge = (mid - half_h) + closure * (eye.bottom + 0.3 - (mid - half_h))
            cover = inside * np.clip((edge - b) / 0.7 + 0.5, 0, 1)
            lash = 1 - 0.45 * min(1.0, 3 * closure) * inside * np.exp(-((b - edge) ** 2) / (2 * 0.6 ** 2))
            out = (out * (1 - cover[..., None]) + self.lid * cover[..., None]) * lash[..., None]
        return out.astype(np.float32)


def source_coords(apex_field: np.ndarray, level: float, jitter: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Face point p shown at each pixel y: solves p + level * E(p) = y - jitter."""
    target = (grid - jitter.astype(np.float32)).astype(np.float32)
    if level == 0:
        return target
    return invert_displacement(target, apex_field * np.float32(level), iterations=FIXED_POINT_ITERATIONS)


def ground_truth_flow(apex_field: np.ndarray, timeline: Timeline, grid: np.ndarray) -> np.ndarray:
    """F(x) = p + s_apex E(p) + j_apex - x with p the face point at x in the onset frame ([H, W, 2])."""
    a = timeline.apex_index
    p = source_coords(apex_field, float(timeline.profile[0]), timeline.jitter[0], grid)
    shown = p + np.float32(timeline.profile[a]) * sample_field(apex_field, p) + timeline.jitter[a]
    return (shown - grid).astype(np.float32)


def render_frame(face_image: np.ndarray, coords: np.ndarray, *, gain: float, noise_sigma: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Sample ``face_image`` (float32 RGB) at ``coords`` (bicubic), apply gain and noise -> uint8 RGB."""
    frame = cv2.remap(face_image, coords[..., 0], coords[..., 1], cv2.INTER_CUBIC,
                      borderMode=cv2.BORDER_REFLECT)
    if gain != 1:
        frame *= np.float32(gain)
    if noise_sigma > 0:
        frame += rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(noise_sigma)
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def render_clip(subject: Subject, apex_field: np.ndarray, timeline: Timeline, *, grid: np.ndarray,
                noise_sigma: float, rng: np.random.Generator, blink: BlinkPainter | None = None
                ) -> list[np.ndarray]:
    """All frames of one clip (uint8 RGB, onset first)."""
    frames = []
    for t in range(len(timeline.profile)):
        face = subject.neutral
        if blink is not None and timeline.blink[t] > 0:
            face = blink.paint(face, float(timeline.blink[t]))
        coords = source_coords(apex_field, float(timeline.profile[t]), timeline.jitter[t], grid)
        frames.append(render_frame(face, coords, gain=float(timeline.gain[t]), noise_sigma=noise_sigma, rng=rng))
    return frames


def displayed_points(points: np.ndarray, apex_field: np.ndarray, level: float, jitter: np.ndarray) -> np.ndarray:
    """Where face points [N, 2] appear in a frame: p + level * E(p) + j."""
    pts = np.asarray(points, np.float32).reshape(1, -1, 2)
    disp = sample_field(apex_field, pts)[0]
    return pts[0] + np.float32(level) * disp + jitter.astype(np.float32)
