"""The crop driver with a fixed-landmark backend: outputs, ground truth, grey frames, reruns, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from selfme.cli import main as selfme_main
from selfme.face import CropConfig, CropFailureRate, crop_dataset
from selfme.face.align import AlignTarget, align_eyes, warp
from selfme.face.landmarks import eye_centres
from face_testing import FixedEyes, manifest, save, texture, write_clip

LEFT, RIGHT = (70.0, 90.0), (130.0, 80.0)  # eyes of the fixed backend: a tilted face


def run(tmp_path: Path, rows, backend, *, out: str = "out", gt: Path | None = None, **settings) -> dict:
    # The frames here are independent random textures (exact warp checks), not a video: the check for
    # frames unlike their neighbours is off (crop.corrupt_area: 0; tests/test_face_bad_input.py has it).
    config = CropConfig(**{"size": 64, "workers": 2, "corrupt_area": 0.0, **settings})
    return crop_dataset(manifest(rows), tmp_path / out, config=config, backend=backend, ground_truth=gt,
                        progress=False)


def failures(tmp_path: Path, out: str = "out") -> pd.DataFrame:
    return pd.read_csv(tmp_path / out / "failures.csv", dtype=str)


def test_one_transform_from_the_onset_is_applied_to_every_frame(tmp_path):
    frames = [texture(160, 200, seed=k) for k in range(10)]
    row = write_clip(tmp_path / "raw", "s1", "c1", frames, suffix=".png")
    backend = FixedEyes(LEFT, RIGHT)
    summary = run(tmp_path, [row], backend, drift_check_frames=2)
    assert backend.images_seen == 3  # the onset plus two drift-check frames, not all ten
    assert summary["n_cropped"] == 1 and summary["frames_written"] == 10
    out = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype={"subject": str, "clip": str})
    rec = out.iloc[0]
    assert Path(rec["frames_dir"]) == tmp_path / "out" / "s1" / "c1"
    assert rec["source_frames_dir"] == row["frames_dir"] and rec["n_frames"] == 10
    matrix = np.array(json.loads(rec["transform"]))
    expected = align_eyes(eye_centres(FixedEyes(LEFT, RIGHT).landmarks), AlignTarget(size=64))
    np.testing.assert_allclose(matrix, expected, atol=1e-6)
    assert (rec["eye_left_x"], rec["eye_left_y"]) == pytest.approx(LEFT)
    assert len(json.loads(rec["landmarks"])) == 68
    for k, frame in enumerate(frames, start=1):
        crop = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "s1" / "c1" / f"img{k}.png")), cv2.COLOR_BGR2RGB)
        assert crop.shape == (64, 64, 3)
        np.testing.assert_array_equal(crop, warp(frame, expected, 64))
    assert summary["frames_per_second"] > 0


def test_clip_frames_or_all_frames(tmp_path):
    row = write_clip(tmp_path / "raw", "s1", "c1", [texture(100, 120, seed=k) for k in range(10)])
    row.update(onset=3, apex=5, offset=7)
    run(tmp_path, [row], FixedEyes(LEFT, RIGHT), out="clip")
    run(tmp_path, [row], FixedEyes(LEFT, RIGHT), out="all", frames="all")
    assert sorted(p.name for p in (tmp_path / "clip" / "s1" / "c1").glob("*.jpg")) == [
        f"img{n}.jpg" for n in range(3, 8)]
    assert len(list((tmp_path / "all" / "s1" / "c1").glob("img*.jpg"))) == 10
    for name in ("clip", "all"):
        assert pd.read_csv(tmp_path / name / "manifest.csv")["n_frames"].tolist() == [5]


def test_ground_truth_is_mapped_into_crop_coordinates(tmp_path):
    raw = tmp_path / "raw"
    rows = [write_clip(raw, "sub01", "EP01", [texture(120, 160, seed=1)] * 3),
            write_clip(raw, "sub01", "EP02", [texture(120, 160, seed=2)] * 3)]
    field = np.zeros((120, 160, 2), np.float32)
    field[..., 0], field[..., 1] = 2.0, -1.0
    (raw / "ground_truth" / "sub01").mkdir(parents=True)
    np.save(raw / "ground_truth" / "sub01" / "EP01.npy", field)
    np.save(raw / "ground_truth" / "sub01" / "EP02.npy", field[:50])  # wrong shape: a warning
    summary = run(tmp_path, rows, FixedEyes(LEFT, RIGHT), gt=raw / "ground_truth")
    assert summary["ground_truth_written"] == 1 and summary["ground_truth_inputs"] == 2
    mapped = np.load(tmp_path / "out" / "ground_truth" / "sub01" / "EP01.npy")
    assert mapped.shape == (64, 64, 2) and mapped.dtype == np.float32
    linear = align_eyes(np.array([LEFT, RIGHT]), AlignTarget(size=64))[:, :2]
    expected = linear @ np.array([2.0, -1.0])  # rotated and scaled translation
    np.testing.assert_allclose(mapped.reshape(-1, 2), np.broadcast_to(expected, (64 * 64, 2)), atol=1e-5)
    assert not (tmp_path / "out" / "ground_truth" / "sub01" / "EP02.npy").exists()
    fails = failures(tmp_path)
    assert fails[["clip", "problem", "severity"]].values.tolist() == [["EP02", "ground_truth", "warning"]]
    out = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str, keep_default_na=False)
    assert out["ground_truth"].str.endswith("EP01.npy").tolist() == [True, False]


@pytest.mark.parametrize("mode,channels,color", [("keep", 1, "gray"), ("replicate", 3, "rgb")])
def test_gray_frames_kept_or_replicated(tmp_path, mode, channels, color):
    grey = [cv2.cvtColor(texture(100, 120, seed=k), cv2.COLOR_RGB2GRAY) for k in range(3)]
    row = write_clip(tmp_path / "raw", "006", "006_1_2", grey, suffix=".png", color="gray")
    run(tmp_path, [row], FixedEyes(LEFT, RIGHT), gray=mode)
    crop = cv2.imread(str(tmp_path / "out" / "006" / "006_1_2" / "img1.png"), cv2.IMREAD_UNCHANGED)
    assert (crop.ndim == 2 and channels == 1) or (crop.shape[2] == channels)
    if channels == 3:
        assert (crop[..., 0] == crop[..., 1]).all() and (crop[..., 1] == crop[..., 2]).all()
    out = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str)
    assert out[["color", "source_color", "subject"]].values.tolist() == [[color, "gray", "006"]]


def test_rerun_skips_unchanged_clips_and_recrops_on_changes(tmp_path):
    raw = tmp_path / "raw"
    rows = [write_clip(raw, "s1", f"c{i}", [texture(100, 120, seed=10 * i + k) for k in range(4)]) for i in range(3)]
    backend = FixedEyes(LEFT, RIGHT)
    first = run(tmp_path, rows, backend)
    assert (first["n_cropped"], first["n_skipped_up_to_date"]) == (3, 0)
    seen = backend.images_seen

    relabelled = [dict(r, label="surprise", label_id=2) if r["clip"] == "c0" else r for r in rows]
    second = run(tmp_path, relabelled, backend)
    assert (second["n_cropped"], second["n_skipped_up_to_date"], second["frames_written"]) == (0, 3, 0)
    assert backend.images_seen == seen  # no landmark detection at all
    assert (second["frames_in_output"], second["n_ok"]) == (12, 3)
    out = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert out["label"].tolist() == ["surprise", "positive", "positive"]  # today's labels, stamped crops
    assert out["transform"].notna().all() and (out["n_frames"] == 4).all()

    frame = Path(rows[1]["frames_dir"]) / "img2.jpg"
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 5_000_000_000))
    assert run(tmp_path, rows, backend)["n_cropped"] == 0  # a touched file with the same content: nothing to do
    save(frame, texture(100, 120, seed=99))  # new content: that clip is recropped
    (tmp_path / "out" / "s1" / ".c2.interrupted.tmp").mkdir()  # leftover of a killed run
    (tmp_path / "out" / "s1" / "c2" / "crop.json").unlink()     # a clip without its stamp is redone
    third = run(tmp_path, rows, backend)
    assert (third["n_cropped"], third["n_skipped_up_to_date"]) == (2, 1)
    assert not (tmp_path / "out" / "s1" / ".c2.interrupted.tmp").exists()

    assert run(tmp_path, rows, backend, size=48)["n_cropped"] == 3  # a changed parameter recrops
    assert run(tmp_path, rows, backend, size=48, workers=1)["n_cropped"] == 0  # threads do not count

    fourth = run(tmp_path, rows[:2], backend, size=48)  # a clip gone from the manifest is removed
    assert fourth["n_clips"] == 2 and not (tmp_path / "out" / "s1" / "c2").exists()


def bad_dataset(root: Path) -> list[dict]:
    """Four broken clips and two good ones."""
    rows = [write_clip(root, "s1", "good1", [texture(100, 120, seed=k) for k in range(4)]),
            write_clip(root, "s1", "good_but_frame3", [texture(100, 120, seed=k) for k in range(5)])]
    truncated = Path(rows[1]["frames_dir"]) / "img2.jpg"  # not onset/apex/offset (1, 3, 5): warning only
    truncated.write_bytes(truncated.read_bytes()[:600])
    rows.append(write_clip(root, "s2", "corrupt_onset", [texture(100, 120, seed=k) for k in range(3)]))
    onset = Path(rows[-1]["frames_dir"]) / "img1.jpg"
    onset.write_bytes(onset.read_bytes()[: onset.stat().st_size // 2])
    rows.append(write_clip(root, "s2", "sizes", [texture(100, 120), texture(100, 120), texture(90, 120)]))
    rows.append(write_clip(root, "s3", "no_onset", [texture(100, 120)] * 3))
    (Path(rows[-1]["frames_dir"]) / "img1.jpg").unlink()
    rows.append(dict(rows[0], subject="s4", clip="absent", frames_dir=(root / "s4" / "absent").as_posix()))
    return rows


def test_bad_inputs_each_get_a_counted_entry(tmp_path):
    rows = bad_dataset(tmp_path / "raw")
    summary = run(tmp_path, rows, FixedEyes(LEFT, RIGHT), max_failure_rate=1.0)
    assert (summary["n_clips"], summary["n_ok"], summary["n_failed"]) == (6, 2, 4)
    fails = failures(tmp_path).set_index("clip")
    assert fails.loc["corrupt_onset", "problem"] == "corrupt_frame"
    assert "truncated JPEG" in fails.loc["corrupt_onset", "detail"]
    assert (fails.loc["good_but_frame3", ["problem", "severity"]] == ["corrupt_frame", "warning"]).all()
    assert fails.loc["sizes", "problem"] == "frame_size_mismatch" and "120x90" in fails.loc["sizes", "detail"]
    assert fails.loc["no_onset", "problem"] == "missing_frame"
    assert fails.loc["absent", "problem"] == "missing_clip_folder"
    assert summary["problems"]["corrupt_frame"] == {"failure": 1, "warning": 1}
    assert not (tmp_path / "out" / "s2").exists()  # nothing partial of failed clips
    out = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert out["clip"].tolist() == ["good1", "good_but_frame3"] and out["n_frames"].tolist() == [4, 4]


def test_failure_rate_above_the_threshold_fails_with_a_clear_message(tmp_path, capsys):
    rows = bad_dataset(tmp_path / "raw")
    with pytest.raises(CropFailureRate, match=r"4 of 6 clips \(66.7%\).*max_failure_rate = 50.0%"):
        run(tmp_path, rows, FixedEyes(LEFT, RIGHT), max_failure_rate=0.5)
    assert len(failures(tmp_path)) == 5  # the outputs are written all the same
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n_failed"] == 4
    csv = tmp_path / "bad.csv"
    manifest(rows).to_csv(csv, index=False)
    code = selfme_main(["crop", "--manifest", str(csv), "--out", str(tmp_path / "cli"), "--no-progress",
                        "--max-failure-rate", "0.1"])
    assert code == 2 and "max_failure_rate" in capsys.readouterr().err


def test_crop_stage_reads_params_and_maps_ground_truth(tmp_path, monkeypatch, capsys):
    from face_testing import astronaut

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # the stages/ scripts
    from stages.crop import main as stage_main

    root = tmp_path / "data" / "raw" / "mini"
    face = cv2.resize(astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    row = write_clip(root, "sub01", "EP01_01", [face] * 3)
    row["frames_dir"] = Path(row["frames_dir"]).relative_to(tmp_path).as_posix()
    (root / "ground_truth" / "sub01").mkdir(parents=True)
    np.save(root / "ground_truth" / "sub01" / "EP01_01.npy", np.ones((256, 256, 2), np.float32))
    (tmp_path / "data" / "manifests").mkdir(parents=True)
    manifest([row]).to_csv(tmp_path / "data" / "manifests" / "mini.csv", index=False)
    (tmp_path / "params.yaml").write_text(
        "datasets:\n  mini:\n    adapter: casme2\n    root: data/raw/mini\n"
        "crop:\n  size: 96\n  drift_check_frames: 0\n  dlib:\n    upsample: 1\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert stage_main(["--dataset", "mini"]) == 0
    out = pd.read_csv("data/faces/mini/manifest.csv", dtype=str)
    assert out["frames_dir"].tolist() == ["data/faces/mini/sub01/EP01_01"]
    assert out["ground_truth"].tolist() == ["data/faces/mini/ground_truth/sub01/EP01_01.npy"]
    assert np.load("data/faces/mini/ground_truth/sub01/EP01_01.npy").shape == (96, 96, 2)
    assert json.loads(Path("data/faces/mini/summary.json").read_text())["backend"] == "dlib"

    absent = dict(row, clip="EP02_01", frames_dir="data/raw/mini/sub01/EP02_01")
    manifest([row, absent]).to_csv("data/manifests/mini.csv", index=False)
    assert stage_main(["--dataset", "mini"]) == 1  # 1 of 2 clips failed, above the default 5%
    assert "crop@mini: FAILED: 1 of 2 clips (50.0%)" in capsys.readouterr().err
