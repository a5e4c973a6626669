"""Adapters against the real published coding sheets: counts, classes and the official MEGC2019 list."""

from __future__ import annotations

import pandas as pd
import pytest

from selfme.datasets import build_manifest

pytestmark = pytest.mark.realdata


def _keys(frame: pd.DataFrame) -> set[tuple[str, str, int]]:
    return {(str(s), str(c), int(l)) for s, c, l in zip(frame["subject"], frame["clip"], frame["label_id"])}


def test_casme2_megc3_reproduces_official_composite_list(annotations, megc_composite):
    result = build_manifest("casme2", "unused", annotations=annotations / "CASME2-coding-20190701.xlsx",
                            allow_missing_frames=True)
    m = result.manifest
    assert len(m) == 145 and m["subject"].nunique() == 24
    assert result.report()["per_class"] == {"negative": 88, "positive": 32, "surprise": 25}
    official = megc_composite[megc_composite.db == "casme2"]
    assert _keys(m) == _keys(official)
    # Nothing silently lost: every sheet row is either kept or listed with a reason.
    assert len(m) + len(result.excluded) == 255
    assert (result.excluded["reason"] != "").all()
    dropped = result.excluded[result.excluded["reason"].str.contains("MEGC2019")]
    assert set(zip(dropped["subject"], dropped["clip"])) == {
        ("sub04", "EP12_01f"), ("sub05", "EP09_05f"), ("sub24", "EP07_01"), ("sub24", "EP07_04f"),
        ("sub24", "EP10_03")}


def test_samm_megc3_reproduces_official_composite_list(annotations, megc_composite):
    result = build_manifest("samm", "unused", annotations=annotations / "SAMM_Micro_FACS_Codes_v2.xlsx",
                            allow_missing_frames=True)
    m = result.manifest
    assert len(m) == 133 and m["subject"].nunique() == 28
    assert result.report()["per_class"] == {"negative": 92, "positive": 26, "surprise": 15}
    assert m["subject"].str.fullmatch(r"\d{3}").all()  # zero-padded, as SAMM's folders
    assert (m["color"] == "gray").all()
    official = megc_composite[megc_composite.db == "samm"].copy()
    official["subject"] = official["subject"].map(lambda s: f"{int(s):03d}")
    assert _keys(m) == _keys(official)
    # Two SAMM apexes lie outside [onset, offset]: kept (the official list has them), repaired, listed.
    repaired = {r["clip"] for r in result.repairs}
    assert repaired == {"028_4_1", "032_3_1"}
    assert ((m["onset"] <= m["apex"]) & (m["apex"] <= m["offset"])).all()


def test_samm_apex_policy_drop_lists_the_bad_apexes(annotations):
    result = build_manifest("samm", "unused", annotations=annotations / "SAMM_Micro_FACS_Codes_v2.xlsx",
                            allow_missing_frames=True, apex_missing="drop")
    assert len(result.manifest) == 131
    outside = result.excluded[result.excluded["reason"].str.contains("outside")]
    assert set(outside["clip"]) == {"028_4_1", "032_3_1"}


def test_casme2_five_class_protocol_keeps_all_26_subjects(annotations):
    result = build_manifest("casme2", "unused", annotations=annotations / "CASME2-coding-20190701.xlsx",
                            protocol="casme2_5", allow_missing_frames=True)
    report = result.report()
    assert report["n_subjects"] == 26
    assert report["per_class"] == {"happiness": 32, "disgust": 63, "repression": 27, "surprise": 28,
                                   "others": 99}
    # sub04 EP12_01f has apex '/': without frames the midpoint is used and the repair listed.
    row = result.manifest.set_index(["subject", "clip"]).loc[("sub04", "EP12_01f")]
    assert row["apex_source"] == "midpoint" and row["onset"] <= row["apex"] <= row["offset"]
    # sub05 EP09_05f's apex is its onset (69): no onset -> apex motion, repaired like an impossible apex.
    assert [(r["clip"], r["problem"]) for r in result.repairs] == [
        ("EP12_01f", "apex not annotated"), ("EP09_05f", "apex 69 is the onset frame (no onset -> apex motion)")]


def test_casme2_2014_style_sheet_reads_the_same(annotations, tmp_path):
    """The 20140508 release has only the seven named columns and 'subNN'-free integer subjects."""
    sheet = pd.read_excel(annotations / "CASME2-coding-20190701.xlsx")
    old = sheet[["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                 "Estimated Emotion"]]
    path = tmp_path / "CASME2-coding-20140508.xlsx"
    old.to_excel(path, index=False)
    new = build_manifest("casme2", tmp_path, annotations=path, allow_missing_frames=True).manifest
    ref = build_manifest("casme2", tmp_path, annotations=annotations / "CASME2-coding-20190701.xlsx",
                         allow_missing_frames=True).manifest
    pd.testing.assert_frame_equal(new, ref)


def test_casme3a_sheet(annotations):
    result = build_manifest("casme3a", "unused",
                            annotations=annotations / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
                            allow_missing_frames=True)
    assert len(result.manifest) + len(result.excluded) == 860
    assert result.report()["per_class"] == {"negative": 457, "positive": 55, "surprise": 187}
    # 28 of the kept samples have apex = onset in the sheet: repaired (midpoint without frames), never kept
    # with zero onset -> apex motion.
    assert sum("is the onset frame" in r["problem"] for r in result.repairs) == 28
    assert (result.manifest["apex"] > result.manifest["onset"]).all()
    assert result.manifest["clip"].is_unique or not result.manifest.duplicated(["subject", "clip"]).any()
    assert result.manifest["fps"].eq(30.0).all()


def test_smic_layout_reproduces_official_composite_list(tmp_path, megc_composite):
    """SMIC-HS has no sheet: build its folder layout (as released: unpadded s3, s3_ne_01) for the 164
    official clips with tiny frames and check the adapter finds exactly those clips and classes."""
    import cv2
    import numpy as np

    official = megc_composite[megc_composite.db == "smic"]
    native = {0: "negative", 1: "positive", 2: "surprise"}
    for _, row in official.iterrows():
        subject = f"s{int(row['subject'][1:])}"
        clip = row["clip"].replace(row["subject"], subject, 1)
        folder = tmp_path / "HS" / subject / "micro" / native[row["label_id"]] / clip
        folder.mkdir(parents=True)
        for n in (1001, 1002, 1003):
            cv2.imwrite(str(folder / f"image{n:06d}.bmp"), np.full((8, 8, 3), n % 255, np.uint8))
    result = build_manifest("smic_hs", tmp_path, apex_missing="midpoint")
    m = result.manifest
    assert len(m) == 164 and m["subject"].nunique() == 16
    assert result.report()["per_class"] == {"negative": 70, "positive": 51, "surprise": 43}
    assert _keys(m) == _keys(official)
    assert (m["onset"] == 1001).all() and (m["offset"] == 1003).all() and (m["apex"] == 1002).all()
    assert (m["apex_source"] == "midpoint").all() and (m["n_frames"] == 3).all()
