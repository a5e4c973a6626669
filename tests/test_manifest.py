"""Manifest building on small on-disk trees: frame layouts, colour, spotting, and every bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from selfme.cli import main
from selfme.datasets import MANIFEST_COLUMNS, build_manifest, read_manifest, write_manifest
from selfme.datasets.frames import index_frames
from selfme.datasets.spotting import spot_apex

SHEET_COLUMNS = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                 "Estimated Emotion"]


def _frames(folder: Path, numbers, *, prefix="img", gray=False, size=(12, 16), suffix=".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in numbers:
        shape = size if gray else (*size, 3)
        cv2.imwrite(str(folder / f"{prefix}{n}{suffix}"), rng.integers(0, 255, shape, dtype=np.uint8))


def _casme2_tree(root: Path, rows, *, layout="raw") -> Path:
    """rows: (subject int, clip, onset, apex, offset, emotion); frames onset..offset on disk."""
    base, prefix = (root, "img") if layout == "raw" else (root / "Cropped", "reg_img")
    for subject, clip, onset, apex, offset, _ in rows:
        _frames(base / f"sub{subject:02d}" / clip, range(onset, offset + 1), prefix=prefix)
    sheet = pd.DataFrame([(s, c, on, ap, off, "4", e) for s, c, on, ap, off, e in rows], columns=SHEET_COLUMNS)
    path = root / "CASME2-coding-20190701.xlsx"
    sheet.to_excel(path, index=False)
    return path


ROWS = [(1, "EP02_01f", 46, 50, 55, "happiness"), (1, "EP19_05f", 10, 12, 15, "disgust"),
        (2, "EP01_11f", 90, 91, 99, "surprise"), (2, "EP03_02", 5, 6, 9, "others")]


@pytest.mark.parametrize("layout", ["raw", "cropped"])
def test_casme2_frame_layouts(tmp_path, layout):
    _casme2_tree(tmp_path, ROWS, layout=layout)
    result = build_manifest("casme2", tmp_path)  # sheet found under root by its release name
    m = result.manifest
    assert list(m.columns) == MANIFEST_COLUMNS
    assert list(m["clip"]) == ["EP02_01f", "EP19_05f", "EP01_11f"]
    assert list(m["label_id"]) == [1, 0, 2] and list(m["subject"]) == ["sub01", "sub01", "sub02"]
    assert list(m["n_frames"]) == [10, 6, 10]
    assert (m["color"] == "rgb").all() and (m["apex_source"] == "annotated").all()
    assert all(Path(d).is_dir() and (layout == "raw") != ("Cropped" in d) for d in m["frames_dir"])
    assert result.excluded.to_dict("records") == [
        {"subject": "sub02", "clip": "EP03_02", "source_label": "others",
         "reason": "label 'others' not in protocol megc3"}]


def test_write_and_read_manifest_roundtrip(tmp_path):
    _casme2_tree(tmp_path / "raw", ROWS)
    result = build_manifest("casme2", tmp_path / "raw")
    report = write_manifest(result, tmp_path / "out" / "casme2.csv")
    back = read_manifest(tmp_path / "out" / "casme2.csv")
    pd.testing.assert_frame_equal(back, result.manifest, check_dtype=False)
    assert (tmp_path / "out" / "casme2_excluded.csv").is_file()
    assert report["per_class"] == {"negative": 1, "positive": 1, "surprise": 1}
    assert not list((tmp_path / "out").glob(".*tmp"))  # nothing half-written left behind


def test_grayscale_frames_are_flagged(tmp_path):
    folder = tmp_path / "006" / "006_1_2"
    _frames(folder, range(5562, 5570), prefix="006_0", gray=True)
    sheet = pd.DataFrame({"Subject": ["006"], "Filename": ["006_1_2"], "Onset Frame": [5562],
                          "Apex Frame": [5565], "Offset Frame": [5569], "Action Units": ["4+7"],
                          "Estimated Emotion": ["Anger"]})
    header = pd.DataFrame([["SAMM Dataset - Master FACS Codes"]] + [[None]] * 12)
    with pd.ExcelWriter(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx") as writer:
        header.to_excel(writer, index=False, header=False)
        sheet.to_excel(writer, index=False, startrow=13)
    m = build_manifest("samm", tmp_path).manifest
    assert m.loc[0, "color"] == "gray" and m.loc[0, "subject"] == "006" and m.loc[0, "n_frames"] == 8
    assert m.loc[0, "label"] == "negative" and m.loc[0, "fps"] == 200.0


def test_index_frames_numbers_and_ambiguity(tmp_path):
    _frames(tmp_path / "a", [3, 10, 2], prefix="img")
    assert list(index_frames(tmp_path / "a")) == [2, 3, 10]
    _frames(tmp_path / "a", [3], prefix="img", suffix=".png")
    with pytest.raises(ValueError, match="share number 3"):
        index_frames(tmp_path / "a")


def test_spot_apex_finds_peak_motion_of_a_real_image():
    from skimage.data import astronaut

    image = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)[100:300, 150:350]
    shifts = [0, 0.5, 1.0, 2.0, 3.0, 2.5, 1.5, 0.5, 0.2]  # peak at index 4
    frames = []
    for i, s in enumerate(shifts):
        M = np.float32([[1, 0, s], [0, 1, 0.5 * s]])
        frames.append(cv2.warpAffine(image, M, (200, 200), borderMode=cv2.BORDER_REFLECT))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, f in enumerate(frames):
            paths.append(Path(tmp) / f"img{i}.png")
            cv2.imwrite(str(paths[-1]), f)
        assert spot_apex(paths) == 4


def test_missing_apex_is_spotted_from_frames(tmp_path):
    from skimage.data import astronaut

    folder = tmp_path / "sub01" / "EP01_01"
    folder.mkdir(parents=True)
    image = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)[100:300, 150:350]
    for n, s in zip(range(20, 28), [0, 0.3, 1.0, 2.0, 1.2, 0.6, 0.3, 0.1]):
        M = np.float32([[1, 0, 0], [0, 1, -s]])
        cv2.imwrite(str(folder / f"img{n}.jpg"), cv2.warpAffine(image, M, (200, 200), borderMode=cv2.BORDER_REFLECT))
    sheet = pd.DataFrame([(1, "EP01_01", 20, "/", 27, "", "surprise")], columns=SHEET_COLUMNS)
    sheet.to_excel(tmp_path / "CASME2-coding-20190701.xlsx", index=False)
    result = build_manifest("casme2", tmp_path)
    row = result.manifest.iloc[0]
    assert row["apex"] == 23 and row["apex_source"] == "spotted"
    assert result.repairs[0]["problem"] == "apex not annotated"
    mid = build_manifest("casme2", tmp_path, apex_missing="midpoint").manifest.iloc[0]
    assert mid["apex"] == 23 and mid["apex_source"] == "midpoint"


# ---------------------------------------------------------------- bad input


def test_missing_sheet_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation sheet"):
        build_manifest("casme2", tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.xlsx"):
        build_manifest("casme2", tmp_path, annotations=tmp_path / "nope.xlsx")


def test_bad_rows_are_listed_and_counted_not_crashed(tmp_path):
    rows = ROWS[:3] + [
        (3, "EP05_01", 10, 12, 14, "hapiness"),   # unknown emotion (typo)
        (3, "EP05_02", 10, 30, 14, "happiness"),  # apex outside [onset, offset]
        (3, "EP05_03", 10, 12, 14, "happiness"),  # clip folder absent (removed below)
        (3, "EP05_04", 10, 12, 14, "surprise"),   # onset frame file missing (removed below)
    ]
    _casme2_tree(tmp_path, rows)
    for f in (tmp_path / "sub03" / "EP05_03").iterdir():
        f.unlink()
    (tmp_path / "sub03" / "EP05_03").rmdir()
    (tmp_path / "sub03" / "EP05_04" / "img10.jpg").unlink()
    result = build_manifest("casme2", tmp_path, apex_missing="drop")
    reasons = dict(zip(result.excluded["clip"], result.excluded["reason"]))
    assert reasons["EP05_01"] == "unknown emotion 'hapiness'"
    assert reasons["EP05_02"] == "apex 30 outside [10, 14]"
    assert reasons["EP05_03"] == "clip folder absent"
    assert reasons["EP05_04"].startswith("missing frame files [10]")
    assert len(result.manifest) == 3
    assert result.report()["n_excluded"] == 4


def test_no_clip_folders_at_all_names_the_fix(tmp_path):
    sheet = pd.DataFrame([r[:4] + ("",) + r[4:] for r in [(1, "EP02_01f", 46, 50, 55, "happiness")]],
                         columns=["Subject", "Filename", "OnsetFrame", "ApexFrame", "Action Units",
                                  "OffsetFrame", "Estimated Emotion"])
    sheet.to_excel(tmp_path / "CASME2-coding-20190701.xlsx", index=False)
    with pytest.raises(FileNotFoundError, match="--allow-missing-frames"):
        build_manifest("casme2", tmp_path)


def test_unknown_dataset_and_protocol(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        build_manifest("casme4", tmp_path)
    with pytest.raises(ValueError, match="not defined for dataset 'samm'"):
        build_manifest("samm", tmp_path, protocol="casme2_5")


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    code = main(["manifest", "--dataset", "casme2", "--root", str(tmp_path), "--out", str(tmp_path / "m.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "annotation sheet" in err and "Traceback" not in err


def test_cli_builds_a_manifest(tmp_path, capsys):
    _casme2_tree(tmp_path, ROWS)
    code = main(["manifest", "--dataset", "casme2", "--root", str(tmp_path), "--protocol", "casme2_5",
                 "--out", str(tmp_path / "m.csv")])
    assert code == 0
    assert '"n_samples": 4' in capsys.readouterr().out
    assert len(read_manifest(tmp_path / "m.csv")) == 4
