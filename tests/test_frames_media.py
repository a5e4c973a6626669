"""The one manifest-relative path resolver, onset/apex lookup, video decoder and device resolver."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from selfme.datasets.frames import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, key_frame_files, resolve_manifest_path,
                                    video_frames, video_properties)
from selfme.device import resolve_device


def test_manifest_paths_resolve_as_written_then_beside_then_above(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    manifest = tmp_path / "a" / "b" / "manifest.csv"
    (tmp_path / "a" / "b" / "beside.npy").write_bytes(b"x")
    (tmp_path / "a" / "above.npy").write_bytes(b"x")
    (tmp_path / "here.npy").write_bytes(b"x")
    assert resolve_manifest_path("here.npy", manifest) == resolve_manifest_path("here.npy", None)
    assert resolve_manifest_path("here.npy", manifest).resolve() == tmp_path / "here.npy"
    assert resolve_manifest_path("beside.npy", manifest) == manifest.parent / "beside.npy"
    assert resolve_manifest_path("above.npy", manifest) == tmp_path / "a" / "above.npy"
    assert str(resolve_manifest_path("nowhere.npy", manifest)) == "nowhere.npy"  # as written, for the error


def test_key_frame_files_finds_onset_and_apex_and_names_a_missing_one(tmp_path):
    clip = tmp_path / "clip"
    clip.mkdir()
    for n in (3, 4, 7):
        (clip / f"img{n}.jpg").write_bytes(b"")
    frames, onset, apex = key_frame_files(clip, 3, 7, name="sub01/EP01")
    assert list(frames) == [3, 4, 7] and onset.name == "img3.jpg" and apex.name == "img7.jpg"
    with pytest.raises(FileNotFoundError, match=r"sub01/EP01: frame\(s\) \[5\]"):
        key_frame_files(clip, 3, 5, name="sub01/EP01")


def test_video_frames_decodes_in_order(tmp_path):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 32))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG")
    for level in (0, 80, 160, 240):
        writer.write(np.full((32, 32, 3), level, np.uint8))
    writer.release()
    levels = [int(round(f.mean())) for f in video_frames(path)]
    assert len(levels) == 4 and all(abs(a - b) <= 3 for a, b in zip(levels, (0, 80, 160, 240)))
    assert len(list(video_frames(path, count=2))) == 2
    assert video_properties(path) == (4, 25.0)
    with pytest.raises(ValueError, match="cannot open the video"):
        list(video_frames(tmp_path / "missing.mp4"))


def test_suffixes_are_disjoint_and_png_is_preferred():
    assert IMAGE_SUFFIXES[0] == ".png" and not set(IMAGE_SUFFIXES) & set(VIDEO_SUFFIXES)


def test_device_resolver(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="loso.device 'cuda:1' asked for"):
        resolve_device("cuda:1", key="loso.device")


def test_visualize_manifest_items_resolve_frames_beside_the_manifest(tmp_path, monkeypatch):
    import pandas as pd

    from selfme.predict.visualize import manifest_items

    (tmp_path / "faces" / "s1" / "EP01").mkdir(parents=True)
    pd.DataFrame([{"subject": "s1", "clip": "EP01", "frames_dir": "s1/EP01", "onset": 1, "apex": 3,
                   "label": "surprise"}]).to_csv(tmp_path / "faces" / "manifest.csv", index=False)
    monkeypatch.chdir(tmp_path)
    (item,) = manifest_items(tmp_path / "faces" / "manifest.csv", limit=4)
    assert item.path == str(tmp_path / "faces" / "s1" / "EP01") and (item.onset, item.apex) == (1, 3)
