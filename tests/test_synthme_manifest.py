"""SynthME read back by the real CASME II adapter, and apex spotting checked against its known apexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from selfme.datasets import build_manifest
from selfme.datasets.frames import index_frames
from selfme.datasets.spotting import spot_apex
from selfme.synth import SynthConfig, generate_synthme


@pytest.fixture(scope="module")
def synthme(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthme") / "synthme"
    generate_synthme(out, SynthConfig(subjects=4, clips_per_subject=4, seed=3))
    return out


def test_synthme_reads_back_through_the_casme2_adapter(synthme):
    sheet_path = next(synthme.glob("CASME2-coding-*.xlsx"))
    sheet = pd.read_excel(sheet_path)
    result = build_manifest("synthme", synthme)
    m = result.manifest
    kept = sheet[sheet["Estimated Emotion"] != "others"]
    assert len(m) == len(kept) and len(result.excluded) == len(sheet) - len(kept)
    assert m["subject"].nunique() == 4 and set(m["label"]) == {"negative", "positive", "surprise"}
    assert (m["n_frames"] == 24).all() and (m["apex_source"] == "annotated").all()
    assert (m["color"] == "rgb").all()
    # The very same adapter as for CASME II: reading it as casme2 gives the same rows.
    as_casme2 = build_manifest("casme2", synthme, annotations=sheet_path).manifest
    pd.testing.assert_frame_equal(as_casme2.drop(columns="dataset"), m.drop(columns="dataset"))


def test_apex_spotting_recovers_synthme_apexes(synthme):
    m = build_manifest("synthme", synthme).manifest
    errors = []
    for _, row in m.iterrows():
        frames = index_frames(row["frames_dir"])
        numbers = [n for n in frames if row["onset"] <= n <= row["offset"]]
        errors.append(abs(numbers[spot_apex([frames[n] for n in numbers])] - row["apex"]))
    errors = np.array(errors)
    assert np.median(errors) <= 2, errors
    assert np.mean(errors <= 3) >= 0.7, errors
