"""Writing SynthME in CASME II's on-disk layout, with its coding sheet and ground-truth motion.

Layout under ``out_dir`` (written in a temporary sibling folder that replaces ``out_dir`` only when
everything succeeded, so an interrupted run leaves nothing that looks finished):

- ``subXX/<clip>/img<N>.jpg``: RGB frames, N contiguous from the onset to the offset frame number;
- ``CASME2-coding-synthme.xlsx``: Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame,
  Action Units, Estimated Emotion (CASME II's columns, in its order);
- ``ground_truth/subXX/<clip>.npy``: float32 [H, W, 2] onset -> apex displacement (dx, dy) in raw
  frame pixels, OpenCV flow convention onset(x) ~= apex(x + F(x)), head jitter included;
  ``<clip>.json``: AUs, intensities, left/right ratio, jitter, landmarks, face box, timeline;
- ``synthme.json``: configuration, seed, counts per class and subject, package version.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import selfme
from selfme.io import atomic_dir, write_image, write_json, write_npy
from selfme.synth.config import SynthConfig
from selfme.synth.face import PORTRAIT_LANDMARKS, Subject, make_subject
from selfme.synth.facs import EMOTION_TO_CLASS, Expression, build_expression, subject_style
from selfme.synth.fields import pixel_grid
from selfme.synth.render import (BlinkPainter, Timeline, displayed_points, ground_truth_flow, render_clip,
                                 sample_timeline)
from selfme.synth.sheet import SHEET_NAME, coding_frame, write_coding_sheet

log = logging.getLogger(__name__)

SUMMARY_NAME = "synthme.json"
_OTHER_EMOTIONS = ("happiness", "disgust", "repression", "surprise")
_OTHER_WEIGHTS = (0.25, 0.3, 0.25, 0.2)


@dataclass(frozen=True, kw_only=True)
class ClipPlan:
    name: str
    emotion: str
    start_frame: int


@dataclass(frozen=True, kw_only=True)
class RenderedClip:
    """One clip in memory: frames (uint8 RGB, onset first), its ground truth and its recipe."""

    frames: list[np.ndarray]
    flow: np.ndarray
    expression: Expression
    timeline: Timeline


def plan_subject(n_clips: int, others_fraction: float, rng: np.random.Generator) -> list[ClipPlan]:
    """Emotions, clip names (CASME II style 'EP02_01f') and first frame numbers of a subject's clips.

    The first three emotions are happiness, surprise and one of disgust/repression, so every subject
    has all three classes; each further clip is 'others' with probability ``others_fraction``.
    """
    emotions = ["happiness", "surprise", str(rng.choice(["disgust", "repression"]))]
    for _ in range(n_clips - 3):
        if rng.random() < others_fraction:
            emotions.append("others")
        else:
            emotions.append(str(rng.choice(_OTHER_EMOTIONS, p=_OTHER_WEIGHTS)))
    emotions = [emotions[i] for i in rng.permutation(n_clips)]
    names: list[str] = []
    while len(names) < n_clips:
        name = f"EP{int(rng.integers(1, 20)):02d}_{int(rng.integers(1, 7)):02d}" + ("f" if rng.random() < 0.3 else "")
        if name.rstrip("f") not in {n.rstrip("f") for n in names}:
            names.append(name)
    return [ClipPlan(name=n, emotion=e, start_frame=int(rng.integers(1, 300))) for n, e in zip(names, emotions)]


def synth_clip(subject: Subject, emotion: str, *, config: SynthConfig, grid: np.ndarray, style: dict[str, float],
               rng: np.random.Generator, blink: BlinkPainter | None = None) -> RenderedClip:
    """Sample one clip's expression and timeline and render it (the in-memory core of the generator)."""
    expression = build_expression(subject, emotion, grid=grid, style=style, amplitude_px=config.amplitude_px, rng=rng)
    timeline = sample_timeline(config.frames_per_clip, jitter_px=config.jitter_px, blink_prob=config.blink_prob,
                               flicker=config.flicker, fps=config.fps, rng=rng)
    if blink is None and timeline.blink.any():
        blink = BlinkPainter(subject, grid)
    frames = render_clip(subject, expression.apex_field, timeline, grid=grid, noise_sigma=config.noise_sigma,
                         rng=rng, blink=blink)
    flow = ground_truth_flow(expression.apex_field, timeline, grid)
    return RenderedClip(frames=frames, flow=flow, expression=expression, timeline=timeline)


def _r(values: Any, nd: int = 4) -> Any:
    """Numbers (or arrays) rounded for JSON."""
    return np.round(np.asarray(values, np.float64), nd).tolist()


def clip_sidecar(subject_name: str, plan: ClipPlan, clip: RenderedClip, subject: Subject) -> dict[str, Any]:
    """The JSON record that accompanies a clip's ground-truth flow."""
    tl, ex = clip.timeline, clip.expression
    a = tl.apex_index
    names = list(subject.landmarks)
    points = np.array([subject.landmarks[n] for n in names], np.float32)
    onset_pts = displayed_points(points, ex.apex_field, float(tl.profile[0]), tl.jitter[0])
    apex_pts = displayed_points(points, ex.apex_field, float(tl.profile[a]), tl.jitter[a])
    magnitude = np.sqrt((clip.flow ** 2).sum(-1))
    return {
        "subject": subject_name, "clip": plan.name, "emotion": ex.emotion,
        "class_3": EMOTION_TO_CLASS[ex.emotion], "action_units": ex.action_units,
        "onset_frame": plan.start_frame, "apex_frame": plan.start_frame + a,
        "offset_frame": plan.start_frame + len(tl.profile) - 1, "apex_index": a,
        "aus": [{"au": x.au, "code": x.code, "right": round(x.right, 4), "left": round(x.left, 4),
                 "peak_px": round(ex.peak_px[x.code], 4)} for x in ex.aus],
        "left_right_ratio": round(ex.left_right_ratio, 4),
        "expression_peak_px": round(float(np.sqrt((ex.apex_field ** 2).sum(-1)).max()), 4),
        "flow_max_px": round(float(magnitude.max()), 4),
        "flow_convention": "F[..., 0] = dx, F[..., 1] = dy in raw-frame pixels; onset(x) ~= apex(x + F(x)) "
                           "(OpenCV optical-flow convention); includes the head jitter difference",
        "expression_only": "F(x) - (jitter_apex - jitter_onset)",
        "jitter_onset": _r(tl.jitter[0]), "jitter_apex": _r(tl.jitter[a]),
        "landmark_convention": "_r = subject's right = image left; 'landmarks' are the neutral face-space "
                               "positions, '_onset'/'_apex' where they are displayed in those frames",
        "landmarks": {n: _r(p) for n, p in zip(names, points)},
        "landmarks_onset": {n: _r(p) for n, p in zip(names, onset_pts)},
        "landmarks_apex": {n: _r(p) for n, p in zip(names, apex_pts)},
        "face_box": _r(subject.face_box, 2),
        "face_box_convention": "(x0, y0, x1, y1) of the neutral face (cheek to cheek, hairline to chin); "
                               "in a frame it is shifted by that frame's jitter",
        "profile": _r(tl.profile), "jitter": _r(tl.jitter), "blink": _r(tl.blink), "gain": _r(tl.gain, 5),
    }


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir())
                                                       and not (out_dir / SUMMARY_NAME).is_file())):
        raise ValueError(f"refusing to replace {out_dir}: it exists and is not a SynthME folder "
                         f"(no {SUMMARY_NAME}); choose an empty or new --out")


def _write_subject(tmp: Path, s: int, config: SynthConfig, grid: np.ndarray, rows: list[dict[str, Any]],
                   bar) -> tuple[list, dict[str, Any]]:
    """Render subject ``s``'s clips into ``tmp`` (frames, ground truth and its sidecar), append their
    coding-sheet rows to ``rows``; return the clip plans and the subject's summary entry."""
    subject_name = f"sub{s:02d}"
    subject = make_subject(s, frame_size=config.frame_size, face_height_px=config.face_height_px,
                           rng=np.random.default_rng([config.seed, s, 0]))
    style = subject_style(np.random.default_rng([config.seed, s, 3]))
    plans = plan_subject(config.clips_per_subject, config.others_fraction, np.random.default_rng([config.seed, s, 1]))
    blink = BlinkPainter(subject, grid) if config.blink_prob > 0 else None
    for c, plan in enumerate(plans):
        clip = synth_clip(subject, plan.emotion, config=config, grid=grid, style=style,
                          rng=np.random.default_rng([config.seed, s, 2, c]), blink=blink)
        for k, frame in enumerate(clip.frames):
            write_image(tmp / subject_name / plan.name / f"img{plan.start_frame + k}.jpg", frame,
                        jpeg_quality=config.jpeg_quality)
        write_npy(tmp / "ground_truth" / subject_name / f"{plan.name}.npy", clip.flow)
        sidecar = clip_sidecar(subject_name, plan, clip, subject)
        write_json(tmp / "ground_truth" / subject_name / f"{plan.name}.json", sidecar)
        rows.append({"Subject": s, "Filename": plan.name, "OnsetFrame": sidecar["onset_frame"],
                     "ApexFrame": sidecar["apex_frame"], "OffsetFrame": sidecar["offset_frame"],
                     "Action Units": sidecar["action_units"], "Estimated Emotion": plan.emotion})
        bar.update(1)
    meta = {"identity": _round_dict(subject.identity), "style": _round_dict(style), "face_box": _r(subject.face_box, 2),
            "face_box_convention": "(x0, y0, x1, y1) of the neutral face (cheek to cheek, hairline to chin); "
                                   "in a frame it is shifted by that frame's jitter", "iod_px": round(subject.iod, 3)}
    return plans, meta


def generate_synthme(out_dir: str | os.PathLike, config: SynthConfig) -> dict[str, Any]:
    """Generate the SynthME dataset under ``out_dir`` (replacing a previous one) and return its summary.

    Deterministic: each subject draws from ``default_rng([seed, subject, k])`` streams and each clip
    from ``default_rng([seed, subject, 2, clip])``, so the same seed and config give byte-identical
    frames, sheet and ground truth, and subjects do not depend on each other.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    width, height = config.frame_size
    grid = pixel_grid(width, height)
    rows, per_subject, subjects_meta = [], {}, {}
    log.info("SynthME: %d subjects x %d clips x %d frames at %dx%d (seed %d) -> %s", config.subjects,
             config.clips_per_subject, config.frames_per_clip, width, height, config.seed, out_dir)
    with atomic_dir(out_dir) as tmp, tqdm(total=config.subjects * config.clips_per_subject, unit="clip",
                                          desc="synthme", disable=None) as bar:
        for s in range(1, config.subjects + 1):
            subject_name = f"sub{s:02d}"
            plans, meta = _write_subject(tmp, s, config, grid, rows, bar)
            per_subject[subject_name] = dict(sorted(Counter(p.emotion for p in plans).items()))
            subjects_meta[subject_name] = meta
            log.info("%s: %s", subject_name, per_subject[subject_name])
        sheet = coding_frame(rows)
        write_coding_sheet(tmp / SHEET_NAME, sheet)
        emotions = Counter(sheet["Estimated Emotion"])
        classes = Counter(EMOTION_TO_CLASS[e] for e in sheet["Estimated Emotion"] if EMOTION_TO_CLASS[e])
        summary = {
            "dataset": "synthme", "selfme_version": selfme.__version__, "seed": config.seed,
            "config": config.to_dict(), "layout": "CASME II raw: subXX/<clip>/img<N>.jpg", "sheet": SHEET_NAME,
            "fps": config.fps, "color": "rgb", "frame_size": [width, height],
            "n_subjects": config.subjects, "n_clips": len(sheet), "n_frames": len(sheet) * config.frames_per_clip,
            "counts_per_emotion": dict(sorted(emotions.items())), "counts_per_class_3": dict(sorted(classes.items())),
            "counts_per_subject": per_subject, "subjects": subjects_meta,
            "ground_truth": "ground_truth/subXX/<clip>.npy float32 [H, W, 2] onset->apex, onset(x) ~= apex(x + F(x))",
            "face_texture": "skimage.data.astronaut() (NASA portrait of Eileen Collins, public domain)",
            "portrait_landmarks": {k: list(v) for k, v in PORTRAIT_LANDMARKS.items()},
        }
        write_json(tmp / SUMMARY_NAME, summary)
    log.info("SynthME: wrote %d clips (%s) to %s", len(sheet), dict(emotions), out_dir)
    return summary


def _round_dict(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}
