"""Bad frames at the crop stage that decoders do not refuse: each listed in failures.csv with its reason,
never cropped silently."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from selfme.face import CropConfig, crop_dataset
from selfme.face.consistency import (DIFF_LEVELS, THUMB_SCALE, WINDOW, inconsistent_fraction, outlier_frames,
                                     references, thumbnail)
from face_testing import FixedEyes, astronaut, manifest, texture, write_clip

LEFT, RIGHT = (70.0, 90.0), (130.0, 80.0)


def steady_clip(root: Path, subject: str, clip: str, n: int = 9, seed: int = 0) -> dict:
    """n frames of one texture with sensor noise and a slow drift: consecutive frames nearly alike."""
    base = texture(120, 160, seed=seed)
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        moved = cv2.warpAffine(base, np.float32([[1, 0, 0.3 * k], [0, 1, 0.2 * k]]), (160, 120),
                               borderMode=cv2.BORDER_REFLECT)
        frames.append(np.clip(moved + rng.normal(0, 1.5, moved.shape), 0, 255).astype(np.uint8))
    return write_clip(root, subject, clip, frames)


def damage_jpeg(path: Path, at: float = 0.25, length: int = 48) -> np.ndarray:
    """Overwrite ``length`` bytes of the entropy-coded data with zeros, the end marker intact; return the
    image as it now decodes (without an error: that is the point)."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start:start + length] = bytes(length)
    path.write_bytes(bytes(data))
    assert data.endswith(b"\xff\xd9")
    image = cv2.imread(str(path))
    assert image is not None
    return image


def run(tmp_path: Path, rows, **settings) -> dict:
    config = CropConfig(**{"size": 64, "workers": 2, "drift_check_frames": 0, **settings})
    return crop_dataset(manifest(rows), tmp_path / "out", config=config, backend=FixedEyes(LEFT, RIGHT),
                        progress=False)


def failures(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "out" / "failures.csv", dtype=str)


def test_damaged_jpeg_data_in_an_apex_or_mid_frame_is_listed_not_cropped(tmp_path):
    raw = tmp_path / "raw"
    rows = [steady_clip(raw, "s1", "clean", seed=1), steady_clip(raw, "s1", "bad_apex", seed=2),
            steady_clip(raw, "s1", "bad_mid", seed=3)]
    assert [r["apex"] for r in rows] == [5, 5, 5]
    apex = Path(rows[1]["frames_dir"]) / "img5.jpg"
    before = cv2.imread(str(apex)).astype(np.int16)
    assert np.abs(damage_jpeg(apex).astype(np.int16) - before).mean() > 10  # garbage, decoded silently
    damage_jpeg(Path(rows[2]["frames_dir"]) / "img7.jpg")

    summary = run(tmp_path, rows, max_failure_rate=1.0)
    assert (summary["n_ok"], summary["n_failed"]) == (2, 1)
    fails = failures(tmp_path)
    assert fails["clip"].tolist() == ["bad_apex", "bad_mid"]
    bad_apex, bad_mid = fails.iloc[0], fails.iloc[1]
    assert (bad_apex["problem"], bad_apex["severity"]) == ("corrupt_frame", "failure")
    assert bad_apex["detail"].startswith("key frame 5: img5.jpg decodes, but ")
    assert bad_apex["detail"].endswith("of it disagrees with both neighbouring frames (damaged image data)")
    assert (bad_mid["problem"], bad_mid["severity"]) == ("corrupt_frame", "warning")
    assert bad_mid["detail"].startswith("img7.jpg decodes, but ") and bad_mid["detail"].endswith("frame 7 left out")
    assert not (tmp_path / "out" / "s1" / "bad_apex").exists()
    assert sorted(p.name for p in (tmp_path / "out" / "s1" / "bad_mid").glob("*.jpg")) == [
        f"img{n}.jpg" for n in (1, 2, 3, 4, 5, 6, 8, 9)]
    out = pd.read_csv(tmp_path / "out" / "manifest.csv").set_index("clip")
    assert out["n_frames"].to_dict() == {"clean": 9, "bad_mid": 8}

    # The check can be turned off (crop.corrupt_area: 0): then the damaged apex is cropped as it decodes.
    off = run(tmp_path, rows, max_failure_rate=1.0, corrupt_area=0.0)
    assert (off["n_ok"], off["n_failed"]) == (3, 0)


def test_the_consistency_check_tells_damage_from_motion():
    """Hand-made thumbnails: an edge moving 2 px a frame (within the window) is consistent, end frames
    included; a block of values that no neighbour has nearby is not; motion beyond the window is."""

    def edge_frames(step: int) -> dict[int, np.ndarray]:
        frames = {}
        for k in range(5):
            image = np.full((40, 40), 100.0, np.float32)
            image[:, : 10 + step * k] = 200.0
            frames[k] = image
        return frames

    frames = edge_frames(2)
    assert [inconsistent_fraction(frames[i], *(frames[j] for j in references(i, 5))) for i in range(5)] == [0.0] * 5
    assert outlier_frames(frames, area=0.01) == {}
    for k in (0, 2, 4):  # first, interior and last frame
        damaged = frames[k].copy()
        damaged[20:30, 25:35] = 0.0  # 100 of 1600 pixels, 100 grey levels below anything nearby
        assert outlier_frames({**frames, k: damaged}, area=0.01) == {k: pytest.approx(100 / 1600)}
        assert outlier_frames({**frames, k: damaged}, area=0.07) == {}
        assert outlier_frames({**frames, k: damaged}, area=0.0) == {}  # the check off
    for step, share in ((DIFF_LEVELS + 1, 0.5), (DIFF_LEVELS - 1, 0.0)):  # a colour shift of the flat half
        shifted = frames[2].copy()
        shifted[:, 20:] += step  # columns 20-39 hold 100 in both neighbours within the window
        assert inconsistent_fraction(shifted, frames[1], frames[3]) == share
    # A real face moving steadily by 8 source px a frame (2 thumbnail px, within WINDOW) is no damage.
    face = cv2.resize(astronaut(), (300, 300), interpolation=cv2.INTER_AREA)
    moving = {k: thumbnail(cv2.warpAffine(face, np.float32([[1, 0, -6.4 * k], [0, 1, 4.8 * k]]), (300, 300),
                                          borderMode=cv2.BORDER_REFLECT)) for k in range(5)}
    assert WINDOW * THUMB_SCALE >= 8 and outlier_frames(moving, area=0.01) == {}
    assert [references(i, 5) for i in range(5)] == [(1, 2), (0, 2), (1, 3), (2, 4), (3, 2)]
    assert references(0, 2) is None
    assert thumbnail(np.zeros((120, 160, 3), np.uint8)).shape == (30, 40, 3)


class NoFace:
    """A landmark backend that finds no face anywhere (what garbage onset data gives a real detector)."""

    name = "none"

    def detect(self, images):
        return [[] for _ in images]

    def fit(self, images, box):
        raise AssertionError("no landmarks without a face")


def test_damaged_onset_data_is_reported_as_corrupt_not_as_no_face(tmp_path):
    raw = tmp_path / "raw"
    rows = [steady_clip(raw, "s1", "clean", seed=1), steady_clip(raw, "s1", "bad_onset", seed=2)]
    damage_jpeg(Path(rows[1]["frames_dir"]) / "img1.jpg")
    config = CropConfig(size=64, workers=2, drift_check_frames=0, max_failure_rate=1.0)
    summary = crop_dataset(manifest(rows), tmp_path / "out", config=config, backend=NoFace(), progress=False)
    assert summary["n_failed"] == 2
    fails = failures(tmp_path).set_index("clip")
    assert fails.loc["clean", "problem"] == "no_face"  # a clean onset without a face is still that
    assert fails.loc["bad_onset", "problem"] == "corrupt_frame"
    assert fails.loc["bad_onset", "detail"].startswith("key frame 1: img1.jpg decodes, but ")


def test_a_grey_frame_in_a_colour_clip_is_listed_not_converted(tmp_path):
    raw = tmp_path / "raw"
    rows = [steady_clip(raw, "s1", "grey_mid", seed=1), steady_clip(raw, "s1", "grey_apex", seed=2),
            steady_clip(raw, "s1", "grey_onset", seed=3)]
    for row, n in zip(rows, (7, 5, 1)):
        path = Path(row["frames_dir"]) / f"img{n}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY))  # one-channel JPEG
    summary = run(tmp_path, rows, max_failure_rate=1.0)
    assert (summary["n_ok"], summary["n_failed"]) == (1, 2)
    fails = failures(tmp_path)
    onset_rows = fails[fails["clip"] == "grey_onset"]
    assert fails[fails["clip"] != "grey_onset"].values.tolist() == [
        ["s1", "grey_mid", "color_mismatch", "img7.jpg is grey, the onset frame in colour; frame 7 left out",
         "warning"],
        ["s1", "grey_apex", "color_mismatch", "key frame 5: img5.jpg is grey, the onset frame in colour", "failure"]]
    assert onset_rows["severity"].tolist() == ["warning"] * 6 + ["failure"]  # frames 2-4, 6-8, then the clip
    assert onset_rows["detail"].iloc[-1] == ("key frame 5: img5.jpg is in colour, the onset frame grey; "
                                             "key frame 9: img9.jpg is in colour, the onset frame grey")
    assert not (tmp_path / "out" / "s1" / "grey_mid" / "img7.jpg").exists()
    assert pd.read_csv(tmp_path / "out" / "manifest.csv")["n_frames"].tolist() == [8]
