"""Bad coding sheets and frames at the prepare stage: each a one-line error naming the file, or a listed
exclusion naming the row, never an abort of the whole dataset nor a silently wrong row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from selfme.cli import main as selfme_main
from selfme.datasets import build_manifest
from selfme.face import CropConfig, crop_dataset
from test_manifest import ROWS, SHEET_COLUMNS, _casme2_tree

REPO = Path(__file__).resolve().parents[1]


def _stage(monkeypatch, tmp_path: Path, name: str):
    """A stage's main() run from ``tmp_path`` (with its own params.yaml)."""
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.chdir(tmp_path)
    module = __import__(f"stages.{name}", fromlist=["main"])
    return module.main


def test_sheet_with_a_header_and_no_rows_fails_prepare_in_one_line(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data" / "raw" / "mini"
    root.mkdir(parents=True)
    sheet = root / "CASME2-coding-20190701.xlsx"
    pd.DataFrame(columns=SHEET_COLUMNS).to_excel(sheet, index=False)
    with pytest.raises(ValueError, match=r"CASME2-coding-20190701.xlsx: the sheet has a header \(row 1\) but no"):
        build_manifest("casme2", root)

    (tmp_path / "params.yaml").write_text(
        "datasets:\n  mini:\n    adapter: casme2\n    root: data/raw/mini\n"
        "prepare:\n  protocol: megc3\n  apex_missing: spot\n  allow_missing_frames: false\n", encoding="utf-8")
    main = _stage(monkeypatch, tmp_path, "prepare")
    assert main(["--dataset", "mini"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"prepare@mini: error: {Path('data/raw/mini/CASME2-coding-20190701.xlsx')}: the sheet has a "
                   f"header (row 1) but no sample rows"]
    assert not (tmp_path / "data" / "manifests").exists()  # nothing written for the next stage to trust


def test_crop_refuses_a_manifest_without_clips(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "data" / "manifests" / "mini.csv"
    _casme2_tree(tmp_path / "raw", ROWS[:1])
    result = build_manifest("casme2", tmp_path / "raw")
    empty.parent.mkdir(parents=True)
    result.manifest.iloc[:0].to_csv(empty, index=False)
    with pytest.raises(ValueError, match=r"mini.csv has no clips to crop"):
        crop_dataset(empty, tmp_path / "faces", config=CropConfig(), progress=False)
    assert selfme_main(["crop", "--manifest", str(empty), "--out", str(tmp_path / "faces"), "--no-progress"]) == 2
    assert "has no clips to crop" in capsys.readouterr().err

    (tmp_path / "params.yaml").write_text("datasets:\n  mini:\n    adapter: casme2\n    root: raw\ncrop:\n  size: 64\n",
                                          encoding="utf-8")
    main = _stage(monkeypatch, tmp_path, "crop")
    assert main(["--dataset", "mini"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crop@mini: error: ") and "mini.csv has no clips" in err[0]


def _sheet(root: Path, rows) -> None:
    """Write a CASME II sheet of (subject cell, clip, onset, apex, offset, emotion) rows as given."""
    sheet = pd.DataFrame([(s, c, on, ap, off, "4", e) for s, c, on, ap, off, e in rows], columns=SHEET_COLUMNS)
    sheet.to_excel(root / "CASME2-coding-20190701.xlsx", index=False)


def test_a_duplicate_row_or_a_bad_subject_id_excludes_that_row_only(tmp_path):
    _casme2_tree(tmp_path, ROWS)
    rows = [(1, "EP02_01f", 46, 50, 55, "happiness"),     # sheet row 2
            ("sub01", "EP02_01f", 46, 50, 55, "happiness"),  # row 3: the same clip again, same annotation
            (1, "EP19_05f", 10, 12, 15, "disgust"),        # row 4
            (1, "EP19_05f", 10, 13, 15, "disgust"),        # row 5: same clip, another apex
            ("Sub 2x", "EP01_11f", 90, 91, 99, "surprise"),  # row 6: not a CASME II subject id
            (2, "EP01_11f", 90, 91, 99, "surprise")]       # row 7
    _sheet(tmp_path, rows)
    result = build_manifest("casme2", tmp_path)
    assert list(zip(result.manifest["subject"], result.manifest["clip"])) == [("sub01", "EP02_01f"),
                                                                             ("sub02", "EP01_11f")]
    assert result.manifest["apex"].tolist() == [50, 91]
    assert result.excluded[["subject", "clip", "reason"]].values.tolist() == [
        ["sub01", "EP02_01f", "duplicate of sheet row 2 (same subject, clip and annotation)"],
        ["sub01", "EP19_05f", "sub01 EP19_05f is listed 2 times with different annotations (sheet rows 4, 5): "
                              "none is used"],
        ["sub01", "EP19_05f", "sub01 EP19_05f is listed 2 times with different annotations (sheet rows 4, 5): "
                              "none is used"],
        ["Sub 2x", "EP01_11f", "sheet row 6: CASME II subject 'Sub 2x' is not a number or 'subNN'"]]
    assert result.report()["n_excluded"] == 4 and result.report()["n_samples"] == 2


def test_sheet_rows_are_numbered_as_a_spreadsheet_shows_them(tmp_path):
    from selfme.datasets.adapters import SAMM

    sheet = pd.DataFrame({"Subject": ["006", "006", "x7"], "Filename": ["006_1_2", "006_1_2", "x7_1"],
                          "Onset Frame": [5562, 5562, 10], "Apex Frame": [5565, 5565, 12],
                          "Offset Frame": [5569, 5569, 14], "Action Units": ["4", "4", "4"],
                          "Estimated Emotion": ["Anger", "Anger", "Anger"]})
    header = pd.DataFrame([["SAMM Dataset - Master FACS Codes"]] + [[None]] * 12)
    with pd.ExcelWriter(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx") as writer:
        header.to_excel(writer, index=False, header=False)
        sheet.to_excel(writer, index=False, startrow=13)  # header on spreadsheet row 14
    rows = SAMM().read_annotations(tmp_path, None)
    assert rows.index.tolist() == [15, 16, 17] and (rows["problem"] == "").all()
    result = build_manifest("samm", tmp_path, allow_missing_frames=True)
    assert result.excluded["reason"].tolist() == ["duplicate of sheet row 15 (same subject, clip and annotation)"]
    assert result.manifest["subject"].tolist() == ["006", "x7"]  # SAMM keeps non-numeric ids as written


def test_an_apex_on_the_onset_is_repaired_like_an_impossible_one_and_one_frame_clips_are_excluded(tmp_path):
    rows = [(1, "EP01_01", 20, 20, 27, "surprise"),   # apex = onset: spotted (8 frames of motion below)
            (1, "EP01_02", 30, 30, 31, "happiness"),  # apex = onset, two frames: spotted on the offset
            (1, "EP01_03", 40, 40, 40, "happiness"),  # onset = apex = offset: one frame, no motion
            (1, "EP01_04", 50, 52, 56, "disgust")]    # a usable apex, kept as annotated
    _casme2_tree(tmp_path, rows)
    import cv2
    import numpy as np
    from skimage.data import astronaut

    image = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)[100:300, 150:350]
    for n, s in zip(range(20, 28), [0, 0.3, 1.0, 2.0, 1.2, 0.6, 0.3, 0.1]):  # peak motion at frame 23
        moved = cv2.warpAffine(image, np.float32([[1, 0, 0], [0, 1, -s]]), (200, 200), borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(tmp_path / "sub01" / "EP01_01" / f"img{n}.jpg"), moved)

    result = build_manifest("casme2", tmp_path)
    m = result.manifest.set_index("clip")
    assert m.loc["EP01_01", ["apex", "apex_source"]].tolist() == [23, "spotted"]
    assert m.loc["EP01_02", ["apex", "apex_source"]].tolist() == [31, "spotted"]
    assert m.loc["EP01_04", ["apex", "apex_source"]].tolist() == [52, "annotated"]
    assert (m["apex"] > m["onset"]).all()
    assert result.excluded[["clip", "reason"]].values.tolist() == [
        ["EP01_03", "onset = offset = 40: a one-frame clip has no motion"]]
    assert [(r["clip"], r["problem"]) for r in result.repairs] == [
        ("EP01_01", "apex 20 is the onset frame (no onset -> apex motion)"),
        ("EP01_02", "apex 30 is the onset frame (no onset -> apex motion)")]

    mid = build_manifest("casme2", tmp_path, apex_missing="midpoint")
    assert mid.manifest.set_index("clip").loc["EP01_01", ["apex", "apex_source"]].tolist() == [23, "midpoint"]
    assert dict(zip(mid.excluded["clip"], mid.excluded["reason"]))["EP01_02"] == (
        "apex 30 is the onset frame (no onset -> apex motion); the midpoint apex is the onset too")
    dropped = build_manifest("casme2", tmp_path, apex_missing="drop")
    assert dropped.manifest["clip"].tolist() == ["EP01_04"]
    assert dict(zip(dropped.excluded["clip"], dropped.excluded["reason"]))["EP01_01"] == (
        "apex 20 is the onset frame (no onset -> apex motion)")
    sheet_only = build_manifest("casme2", tmp_path, allow_missing_frames=True)  # no frames: midpoint
    assert sheet_only.manifest.set_index("clip").loc["EP01_01", "apex"] == 23


def test_key_frames_of_another_colour_mode_exclude_the_clip(tmp_path):
    import cv2

    _casme2_tree(tmp_path, ROWS[:3])
    apex = tmp_path / "sub01" / "EP02_01f" / "img50.jpg"  # the apex of a colour clip, saved grey
    cv2.imwrite(str(apex), cv2.cvtColor(cv2.imread(str(apex)), cv2.COLOR_BGR2GRAY))
    mid = tmp_path / "sub01" / "EP19_05f" / "img11.jpg"  # not a key frame: left to the crop stage
    cv2.imwrite(str(mid), cv2.cvtColor(cv2.imread(str(mid)), cv2.COLOR_BGR2GRAY))
    onset = tmp_path / "sub02" / "EP01_11f" / "img90.jpg"
    onset.write_bytes(b"not an image")
    result = build_manifest("casme2", tmp_path)
    assert result.manifest["clip"].tolist() == ["EP19_05f"] and result.manifest["color"].tolist() == ["rgb"]
    reasons = dict(zip(result.excluded["clip"], result.excluded["reason"]))
    assert reasons["EP02_01f"] == (f"key frames differ in colour (onset img46.jpg rgb, apex img50.jpg gray, "
                                   f"offset img55.jpg rgb) in {apex.parent}")
    assert reasons["EP01_11f"] == f"unreadable or corrupt image: {onset}"  # one bad file, not the dataset
