"""Landmark backends: face_alignment's missing-weights error (offline, instant), its batching plumbing
(random weights, detector stubbed), and the dlib model shipped in a pip package."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from selfme.cli import main as selfme_main
from selfme.face import CropConfig, crop_dataset
from selfme.face.backends import FACE_ALIGNMENT_WEIGHTS, dlib_predictor_path, make_backend
from face_testing import astronaut, dlib_backend, manifest, write_clip

NAMES = ("2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth")


def test_face_alignment_without_weights_names_both_files_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as info:
        make_backend("face_alignment")
    assert time.perf_counter() - start < 5.0  # no download attempt
    message = str(info.value)
    for name in NAMES:
        assert name in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "$TORCH_HOME/hub/checkpoints" in message and "~/.cache/torch/hub/checkpoints" in message


def test_missing_weights_stop_the_crop_with_that_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    row = write_clip(tmp_path / "raw", "s1", "c1", [np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(FileNotFoundError, match="s3fd-619a316812.pth"):
        crop_dataset(manifest([row]), tmp_path / "out", config=CropConfig(backend="face_alignment"),
                     progress=False)
    csv = tmp_path / "m.csv"
    manifest([row]).to_csv(csv, index=False)
    code = selfme_main(["crop", "--manifest", str(csv), "--out", str(tmp_path / "cli"),
                        "--backend", "face_alignment", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "2DFAN4-11f355bf06.pth.tar" in err and "s3fd-619a316812.pth" in err


def test_face_alignment_batches_detection_and_fits_landmarks_on_full_frames(tmp_path, monkeypatch):
    """Random weights in a private TORCH_HOME (the real ones cannot be downloaded here): checks that the
    backend loads them without any download, batches equal-sized images and scales boxes back; not
    landmark accuracy (the networks' forward passes are stubbed)."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), folder / NAMES[0])
    torch.save(s3fd().state_dict(), folder / NAMES[1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    backend = make_backend("face_alignment", max_side=64,
                           options={"device": "cpu", "batch_size": 2, "compile": False})
    batches = []

    def fake_detect(tensor):
        batches.append(tuple(tensor.shape))
        return [np.array([[8.0, 10.0, 40.0, 50.0, 0.9]]) for _ in range(tensor.shape[0])]

    def fake_landmarks(image, detected_faces):  # 2DFAN4 takes seconds per face on a CPU
        assert image.ndim == 3 and image.shape[2] == 3
        return [np.tile(np.asarray(box[:2]), (68, 1)) for box in detected_faces]

    monkeypatch.setattr(backend._fa.face_detector, "detect_from_batch", fake_detect)
    monkeypatch.setattr(backend._fa, "get_landmarks_from_image", fake_landmarks)
    images = [np.zeros((128, 128, 3), np.uint8)] * 3 + [np.zeros((96, 128), np.uint8)]
    faces = backend.detect(images)
    assert sorted(batches) == sorted([(2, 3, 64, 64), (1, 3, 64, 64), (1, 3, 48, 64)])
    assert [len(f) for f in faces] == [1, 1, 1, 1]
    assert faces[0][0].box == pytest.approx((16.0, 20.0, 80.0, 100.0))  # back in full-frame pixels
    assert faces[0][0].landmarks.shape == (68, 2) and faces[0][0].score == pytest.approx(0.9)
    np.testing.assert_allclose(faces[3][0].landmarks[0], [16.0, 20.0])  # grey image, same scaling
    tracked = backend.fit(images[:2], (10.0, 14.0, 84.0, 96.0))  # nearest detected face per frame
    assert len(tracked) == 2 and np.allclose(tracked[0][0], [16.0, 20.0])


def test_dlib_model_ships_in_a_pip_package():
    path = dlib_predictor_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.stat().st_size > 90_000_000
    faces = dlib_backend().detect([astronaut()])[0]
    assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2)
    left, right = faces[0].eyes()
    assert left[0] < right[0] and abs(left[1] - right[1]) < 15  # upright face, image-left eye first
    assert set(FACE_ALIGNMENT_WEIGHTS) == set(NAMES)
