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
