"""SynthME: determinism, CASME II layout, ground-truth motion, class recipes, detectability."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from selfme.io import read_image
from selfme.synth import SynthConfig, generate_synthme
from selfme.synth.dataset import synth_clip
from selfme.synth.face import make_subject
from selfme.synth.facs import EMOTION_TO_CLASS, build_expression, subject_style
from selfme.synth.fields import pixel_grid, sample_field
from selfme.synth.render import blink_track, displayed_points, sample_timeline, temporal_profile
from selfme.synth.sheet import SHEET_COLUMNS, SHEET_NAME

TINY = dict(subjects=2, clips_per_subject=3, frames_per_clip=10, frame_width=160, frame_height=120,
            face_height_px=70.0)
QUIET = dict(jitter_px=0.0, blink_prob=0.0, flicker=0.0, noise_sigma=0.0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "synthme"
    return out, generate_synthme(out, SynthConfig(**TINY, seed=7, blink_prob=0.5))


def test_same_seed_is_byte_identical_and_other_seed_differs(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    generate_synthme(again, SynthConfig(**TINY, seed=7, blink_prob=0.5))
    first, second = _files(out), _files(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    other = tmp_path / "other"
    generate_synthme(other, SynthConfig(**TINY, seed=8, blink_prob=0.5))
    third = _files(other)
    assert third[SHEET_NAME] != first[SHEET_NAME]
    frame = next(k for k in first if k.endswith(".jpg"))
    assert frame not in third or third[frame] != first[frame]


def test_sheet_and_frames_follow_casme2_layout(tiny):
    out, summary = tiny
    sheet = pd.read_excel(out / SHEET_NAME)
    assert list(sheet.columns) == SHEET_COLUMNS
    assert len(sheet) == TINY["subjects"] * TINY["clips_per_subject"] == summary["n_clips"]
    assert pd.api.types.is_integer_dtype(sheet["Subject"])
    for row in sheet.itertuples(index=False):
        subject, clip, onset, apex, offset = row[0], row[1], row[2], row[3], row[4]
        assert onset < apex < offset and offset - onset + 1 == TINY["frames_per_clip"]
        folder = out / f"sub{subject:02d}" / clip
        expected = {f"img{n}.jpg" for n in range(onset, offset + 1)}
        assert {p.name for p in folder.iterdir()} == expected
        image = read_image(folder / f"img{apex}.jpg")
        assert image.shape == (TINY["frame_height"], TINY["frame_width"], 3)
        assert not np.array_equal(image[..., 0], image[..., 2])  # colour, not grey
        flow = np.load(out / "ground_truth" / f"sub{subject:02d}" / f"{clip}.npy")
        assert flow.dtype == np.float32 and flow.shape == (TINY["frame_height"], TINY["frame_width"], 2)
        meta = json.loads((out / "ground_truth" / f"sub{subject:02d}" / f"{clip}.json").read_text())
        assert (meta["onset_frame"], meta["apex_frame"], meta["offset_frame"]) == (onset, apex, offset)
        assert meta["action_units"] == row[5] and meta["emotion"] == row[6]
    classes = sheet.groupby("Subject")["Estimated Emotion"].apply(lambda e: {EMOTION_TO_CLASS[x] for x in e})
    assert all({"negative", "positive", "surprise"} <= c for c in classes)
    assert summary["counts_per_emotion"] == dict(sorted(sheet["Estimated Emotion"].value_counts().items()))
    assert json.loads((out / "synthme.json").read_text())["config"]["seed"] == 7


def test_ground_truth_matches_displayed_landmarks(tiny):
    """F sampled where a landmark is shown at onset equals where it is shown at apex, minus that."""
    out, _ = tiny
    for side in sorted((out / "ground_truth").glob("sub*/*.json")):
        meta = json.loads(side.read_text())
        flow = np.load(side.with_suffix(".npy"))
        names = list(meta["landmarks"])
        onset = np.array([meta["landmarks_onset"][n] for n in names], np.float32)
        apex = np.array([meta["landmarks_apex"][n] for n in names], np.float32)
        predicted = sample_field(flow, onset[None])[0]
        assert np.abs(predicted - (apex - onset)).max() < 0.02, side.name


def _quiet_clips(size: tuple[int, int], face: float, jitter: float, seed: int):
    config = SynthConfig(**{**TINY, **QUIET, "frame_width": size[0], "frame_height": size[1],
                            "face_height_px": face, "jitter_px": jitter})
    grid = pixel_grid(*size)
    subject = make_subject(1, frame_size=size, face_height_px=face, rng=np.random.default_rng([seed, 1]))
    style = subject_style(np.random.default_rng([seed, 2]))
    for k, emotion in enumerate(("happiness", "disgust", "repression", "surprise")):
        yield emotion, subject, config, synth_clip(subject, emotion, config=config, grid=grid, style=style,
                                                   rng=np.random.default_rng([seed, 3, k]))


@pytest.mark.parametrize("jitter", [0.0, 0.3])
def test_warping_apex_by_ground_truth_reproduces_onset(jitter):
    for emotion, subject, config, clip in _quiet_clips((160, 120), 70.0, jitter, seed=11):
        onset = clip.frames[0].astype(np.float32)
        apex = clip.frames[clip.timeline.apex_index].astype(np.float32)
        coords = pixel_grid(160, 120) + clip.flow
        warped = cv2.remap(apex, coords[..., 0], coords[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        x0, y0, x1, y1 = (int(round(v)) for v in subject.face_box)
        face = (slice(y0 + 3, y1 - 3), slice(x0 + 3, x1 - 3))
        err_identity = np.abs(apex - onset)[face].mean()
        err_gt = np.abs(warped - onset)[face].mean()
        assert err_gt * 3 < err_identity, (emotion, err_identity, err_gt)
        shift = clip.timeline.jitter[clip.timeline.apex_index] - clip.timeline.jitter[0]
        expression = np.linalg.norm(clip.flow - shift, axis=-1).max()
        assert 0.3 * config.amplitude_px < expression <= config.amplitude_px + 1e-3, emotion
        assert np.linalg.norm(clip.flow, axis=-1).max() <= config.amplitude_px + np.linalg.norm(shift) + 1e-3


def test_class_recipes_move_the_right_regions():
    """Sign of the apex field at landmarks, for a plain and a mirrored subject, several draws each."""
    size, grid = (320, 240), pixel_grid(320, 240)
    subjects = {}
    for i in range(40):
        s = make_subject(i, frame_size=size, face_height_px=140, rng=np.random.default_rng([5, i]))
        subjects.setdefault(s.identity["mirrored"], s)
        if len(subjects) == 2:
            break
    assert set(subjects) == {False, True}
    for s in subjects.values():  # landmark convention survives mirroring
        lm = s.landmarks
        assert lm["eye_r_centre"][0] < lm["eye_l_centre"][0] and lm["mouth_r"][0] < lm["mouth_l"][0]
        assert lm["brow_r_mid"][1] < lm["eye_r_centre"][1] < lm["nose_tip"][1] < lm["lip_lower"][1] < lm["chin"][1]
        x0, y0, x1, y1 = s.face_box
        assert all(x0 < x < x1 and y0 < y < y1 for x, y in lm.values())
    for subject in subjects.values():
        for draw in range(3):
            rng = np.random.default_rng([draw, subject.index])
            style = subject_style(rng)

            def field_at(emotion: str, *names: str) -> np.ndarray:
                e = build_expression(subject, emotion, grid=grid, style=style, amplitude_px=2.5, rng=rng)
                return sample_field(e.apex_field, np.array([[subject.landmarks[n] for n in names]], np.float32))[0]

            # Image axes: x to the right, y down; '_r' landmarks are on the image's left.
            mr, ml = field_at("happiness", "mouth_r", "mouth_l")
            assert mr[1] < -0.3 and ml[1] < -0.3  # up
            assert mr[0] < -0.2 and ml[0] > 0.2  # outward
            br, bl = field_at("surprise", "brow_r_mid", "brow_l_mid")
            assert br[1] < -0.3 and bl[1] < -0.3
            br, bl = field_at("disgust", "brow_r_inner", "brow_l_inner")
            assert br[1] > 0.3 and bl[1] > 0.3  # down
            assert br[0] > 0.1 and bl[0] < -0.1  # towards the midline
            brow, *lower = field_at("repression", "brow_r_mid", "mouth_r", "mouth_l", "lip_lower", "chin")
            assert np.linalg.norm(brow) < 0.05 and max(np.linalg.norm(v) for v in lower) > 0.5


def test_rendered_face_is_found_by_a_cascade_detector(tiny):
    """OpenCV's LBP frontal-face cascade (shipped in scikit-image; OpenCV 5 wheels no longer have
    cv2.CascadeClassifier, so scikit-image's implementation runs it) finds exactly the stored face."""
    import skimage.data
    from skimage.feature import Cascade

    cascade = Cascade(str(Path(skimage.data.__file__).parent / "lbpcascade_frontalface_opencv.xml"))

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)

    out, _ = tiny
    frames = []
    for side in sorted((out / "ground_truth").glob("sub*/*.json")):
        meta = json.loads(side.read_text())
        frames.append((read_image(out / meta["subject"] / meta["clip"] / f"img{meta['onset_frame']}.jpg"),
                       meta["face_box"]))
    for i in range(2):  # default frame size, in memory
        subject = make_subject(i, frame_size=(320, 240), face_height_px=140, rng=np.random.default_rng([21, i]))
        frames.append((np.clip(subject.neutral, 0, 255).astype(np.uint8), subject.face_box))
    for image, box in frames:
        h = image.shape[0]
        found = cascade.detect_multi_scale(img=image, scale_factor=1.1, step_ratio=1, min_size=(h // 4, h // 4),
                                           max_size=(h, h), min_neighbor_number=4, intersection_score_threshold=0.2)
        boxes = [(d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]) for d in found]
        assert len(boxes) == 1 and iou(boxes[0], box) > 0.4, (boxes, box)


def test_timeline_profile_and_blinks():
    profile = temporal_profile(24, 10, 0.2)
    assert profile[0] == 0 and profile[10] == pytest.approx(1) and profile[-1] == pytest.approx(0.2)
    assert np.all(np.diff(profile[:11]) > 0) and np.all(np.diff(profile[10:]) < 0)
    blinks = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        apex = int(rng.integers(2, 20))
        closure = blink_track(24, apex, 1.0, rng)
        assert closure[0] == 0 and closure[apex] == 0
        blinks += closure.max() > 0.5
    assert blinks > 150
    quiet = sample_timeline(10, jitter_px=0, blink_prob=0, flicker=0, fps=200, rng=np.random.default_rng(0))
    assert not quiet.jitter.any() and not quiet.blink.any() and np.all(quiet.gain == 1)


def test_landmarks_follow_the_expression():
    """displayed_points moves a landmark by exactly the field there (face space -> frame)."""
    for emotion, subject, _, clip in _quiet_clips((160, 120), 70.0, 0.0, seed=2):
        if emotion != "happiness":
            continue
        corner = np.array([subject.landmarks["mouth_l"]], np.float32)
        shown = displayed_points(corner, clip.expression.apex_field, 1.0, np.zeros(2, np.float32))
        assert np.linalg.norm(shown - corner) > 0.3


def test_config_validation_cli_and_stage(tmp_path):
    with pytest.raises(ValueError, match="clips_per_subject"):
        SynthConfig(clips_per_subject=2)
    with pytest.raises(ValueError, match="frame_sizes"):
        SynthConfig.from_mapping({"frame_sizes": 3})

    from selfme.cli import main

    config = tmp_path / "synth.yaml"
    config.write_text("synth:\n  frame_width: 128\n  frame_height: 96\n  face_height_px: 60\n  subjects: 5\n")
    out = tmp_path / "cli_out"
    assert main(["synth", "--out", str(out), "--subjects", "1", "--seed", "4", "--clips-per-subject", "3",
                 "--frames-per-clip", "6", "--config", str(config)]) == 0
    summary = json.loads((out / "synthme.json").read_text())
    assert summary["n_subjects"] == 1 and summary["n_clips"] == 3 and summary["frame_size"] == [128, 96]

    params = tmp_path / "params.yaml"
    params.write_text("synth:\n  subjects: 1\n  clips_per_subject: 3\n  frames_per_clip: 6\n"
                      "  frame_width: 128\n  frame_height: 96\n  face_height_px: 60\n  seed: 4\n")
    stage_out = tmp_path / "stage_out"
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "stages.synth", "--out", str(stage_out), "--params", str(params)],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _files(stage_out)[SHEET_NAME] == _files(out)[SHEET_NAME]


def test_interrupted_run_leaves_nothing_and_foreign_folders_are_kept(tmp_path, monkeypatch):
    import selfme.synth.dataset as dataset

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(dataset, "write_coding_sheet", boom)
    out = tmp_path / "synthme"
    with pytest.raises(RuntimeError):
        generate_synthme(out, SynthConfig(**{**TINY, "subjects": 1}))
    assert not out.exists() and list(tmp_path.iterdir()) == []
    foreign = tmp_path / "precious"
    (foreign / "keep.txt").parent.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="refusing"):
        generate_synthme(foreign, SynthConfig(**TINY))
    assert (foreign / "keep.txt").read_text() == "x"


def test_coding_sheet_bytes_do_not_depend_on_the_clock():
    """openpyxl stamps the time of writing into the xlsx; the sheet writer removes it."""
    import io
    import zipfile

    from selfme.synth.sheet import coding_frame, deterministic_xlsx

    frame = coding_frame([{"Subject": 1, "Filename": "EP01_01", "OnsetFrame": 5, "ApexFrame": 9, "OffsetFrame": 12,
                           "Action Units": "6+12", "Estimated Emotion": "happiness"}])
    variants = []
    for year in (2001, 2024):
        buffer = io.BytesIO()
        with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
            frame.to_excel(writer, index=False)
        stamped = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(stamped, "w") as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename == "docProps/core.xml":
                    data = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", f"{year}-02-03T04:05:06".encode(), data)
                    assert f"{year}-02-03".encode() in data
                info.date_time = (year, 2, 3, 4, 5, 6)
                dst.writestr(info, data)
        variants.append(deterministic_xlsx(stamped.getvalue()))
    assert variants[0] == variants[1]
    assert pd.read_excel(io.BytesIO(variants[0])).equals(frame)
