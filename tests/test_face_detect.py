"""Real detection with the offline dlib backend: aligned portraits (checked by re-detecting landmarks on
the crops), the same box for every frame, several faces, no face, grey frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from selfme.face import CropConfig, crop_dataset
from selfme.face.align import AlignTarget, eye_line_angle
from selfme.face.landmarks import largest_face
from selfme.io import read_image
from face_testing import astronaut, dlib_backend, manifest, manifest_row, save, write_clip

PORTRAITS = ("biden_official_portrait.jpg", "nasa_astronaut_eileen_collins.png", "obama_official_portrait.jpg")


def run(tmp_path: Path, rows, **settings) -> dict:
    config = CropConfig(**{"size": 128, "workers": 2, "drift_check_frames": 0, **settings})
    return crop_dataset(manifest(rows), tmp_path / "out", config=config, backend=dlib_backend(), progress=False)


def redetected_eyes(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    faces = dlib_backend().detect([image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)])[0]
    assert faces, f"no face re-detected on the crop {path}"
    return largest_face(faces).eyes()


def canvas_with(face: np.ndarray, shift: tuple[int, int], *, size=(420, 380)) -> np.ndarray:
    """``face`` pasted on a grey canvas, moved by ``shift`` (dx, dy) pixels."""
    h, w = size
    out = np.full((h, w, 3), 128, np.uint8)
    fh, fw = face.shape[:2]
    y0, x0 = (h - fh) // 2 + shift[1], (w - fw) // 2 + shift[0]
    out[y0:y0 + fh, x0:x0 + fw] = face
    return out


@pytest.mark.realdata
@pytest.mark.parametrize("size", [128, 256])
def test_portraits_come_out_aligned(realdata, tmp_path, size):
    rows = []
    for i, name in enumerate(PORTRAITS):
        src = realdata / "faces_public_domain" / name
        folder = tmp_path / "raw" / f"p{i}" / "clip"
        save(folder / "img1.png", read_image(src))  # a one-frame clip
        rows.append(manifest_row(f"p{i}", "clip", folder, onset=1, apex=1, offset=1))
    summary = run(tmp_path, rows, size=size)
    assert summary["n_ok"] == 3
    target = AlignTarget(size=size).eye_positions()
    for i in range(3):
        eyes = redetected_eyes(tmp_path / "out" / f"p{i}" / "clip" / "img1.png")
        assert abs(eye_line_angle(eyes)) < 2.0
        assert np.abs(eyes - target).max() < 3.0, (PORTRAITS[i], eyes, target)


def test_later_frames_keep_the_onset_box_and_are_not_recentred(tmp_path):
    face = cv2.resize(astronaut(), (300, 300), interpolation=cv2.INTER_AREA)
    shifts = [(0, 0), (-6, 5), (-12, 10)]
    frames = [canvas_with(face, s) for s in shifts]
    row = write_clip(tmp_path / "raw", "s1", "c1", frames, suffix=".png")
    summary = run(tmp_path, [row], size=160, eye_distance=0.3, drift_check_frames=2, drift_warn_px=4.0)
    rec = pd.read_csv(tmp_path / "out" / "manifest.csv").iloc[0]
    linear = np.array(json.loads(rec["transform"]))[:, :2]
    target = AlignTarget(size=160, eye_distance=0.3).eye_positions()
    crops = [cv2.imread(str(tmp_path / "out" / "s1" / "c1" / f"img{k}.png")).astype(np.float32) for k in (1, 2, 3)]
    for k, shift in enumerate(shifts):
        moved = linear @ np.array(shift, dtype=np.float64)  # where the onset box puts the moved head
        eyes = redetected_eyes(tmp_path / "out" / "s1" / "c1" / f"img{k + 1}.png")
        np.testing.assert_allclose(eyes, target + moved, atol=2.0)
        expected = cv2.warpAffine(crops[0], np.array([[1, 0, moved[0]], [0, 1, moved[1]]]), (160, 160))
        inner = (slice(25, 135), slice(25, 135))
        assert np.abs(crops[k][inner] - expected[inner]).mean() < 3.0
        if k:
            assert np.abs(crops[k][inner] - crops[0][inner]).mean() > 10.0
    assert summary["problems"]["eye_drift"] == {"failure": 0, "warning": 1}
    assert rec["eye_drift_px"] == pytest.approx(np.linalg.norm(linear @ np.array([-12, 10])), abs=2.0)


@pytest.mark.realdata
def test_two_portraits_side_by_side_take_the_largest_with_a_warning(realdata, tmp_path):
    big = read_image(realdata / "faces_public_domain" / "obama_official_portrait.jpg")
    small = read_image(realdata / "faces_public_domain" / "biden_official_portrait.jpg")
    big = cv2.resize(big, (int(big.shape[1] * 500 / big.shape[0]), 500), interpolation=cv2.INTER_AREA)
    small = cv2.resize(small, (int(small.shape[1] * 500 / small.shape[0]), 500), interpolation=cv2.INTER_AREA)
    pair = np.concatenate([small, big], axis=1)  # Biden's face is the smaller one, on the left
    folder = tmp_path / "raw" / "s1" / "pair"
    save(folder / "img1.png", pair)
    summary = run(tmp_path, [manifest_row("s1", "pair", folder, onset=1, apex=1, offset=1)])
    assert summary["n_ok"] == 1 and summary["problems"]["several_faces"] == {"failure": 0, "warning": 1}
    fails = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert fails["problem"].tolist() == ["several_faces"] and "took the largest" in fails["detail"][0]
    rec = pd.read_csv(tmp_path / "out" / "manifest.csv").iloc[0]
    assert rec["n_faces"] == 2 and rec["eye_left_x"] > small.shape[1]  # the eyes are Obama's


def test_noise_and_blank_frames_have_no_face(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    blank = np.full((240, 320, 3), 90, np.uint8)
    rows = [write_clip(tmp_path / "raw", "s1", "noise", [noise] * 2),
            write_clip(tmp_path / "raw", "s1", "blank", [blank] * 2)]
    summary = run(tmp_path, rows, max_failure_rate=1.0)
    assert summary["n_failed"] == 2 and summary["problems"]["no_face"]["failure"] == 2
    fails = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert fails["detail"].str.contains("no face found on the onset frame img1.jpg").all()


def test_grey_frames_are_detected_and_kept_single_channel(tmp_path):
    grey = cv2.cvtColor(canvas_with(cv2.resize(astronaut(), (300, 300)), (0, 0)), cv2.COLOR_RGB2GRAY)
    row = write_clip(tmp_path / "raw", "006", "006_1_2", [grey] * 2, color="gray")
    run(tmp_path, [row], gray="keep")
    path = tmp_path / "out" / "006" / "006_1_2" / "img1.jpg"
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ndim == 2
    np.testing.assert_allclose(redetected_eyes(path), AlignTarget(size=128).eye_positions(), atol=3.0)


def test_detection_on_a_shrunk_copy_gives_full_resolution_landmarks():
    from selfme.face.backends import DlibBackend

    image = cv2.resize(astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    full = largest_face(dlib_backend().detect([image])[0]).eyes()  # max_side 640: shrunk for detection
    shrunk = largest_face(DlibBackend(max_side=256).detect([image])[0]).eyes()
    assert np.abs(full - shrunk).max() < 3.0
    assert 300 < full[0, 0] < full[1, 0] < 700  # full-resolution coordinates
