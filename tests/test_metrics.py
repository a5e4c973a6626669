"""UF1 / UAR (Eq. 17-18) against hand-computed cases and published peers' per-sample logs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from selfme.cli import main
from selfme.metrics import read_megc_log, read_subject_list_log, score, score_by_group, write_megc_log


def test_hand_computed_example():
    # gt:   0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
    s = score([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3)
    # class 0: TP2 FP0 FN1 -> F1 4/5, recall 2/3; class 1: TP1 FP1 FN1 -> 1/2, 1/2; class 2: TP1 FP1 FN0 -> 2/3, 1
    assert s.f1 == pytest.approx((0.8, 0.5, 2 / 3))
    assert s.recall == pytest.approx((2 / 3, 0.5, 1.0))
    assert s.uf1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert s.uar == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert s.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_uar_is_recall_not_precision():
    # Everything predicted as class 0: recall = (1, 0, 0); precision of class 0 = 2/4.
    s = score([0, 0, 1, 2], [0, 0, 0, 0], 3)
    assert s.uar == pytest.approx(1 / 3)


def test_class_absent_from_a_fold_and_class_never_predicted():
    absent = score([0, 0, 1], [0, 1, 1], 3)  # class 2 neither true nor predicted: left out
    assert math.isnan(absent.f1[2]) and math.isnan(absent.recall[2])
    assert absent.uf1 == pytest.approx((2 / 3 + 2 / 3) / 2)
    predicted_never_true = score([0, 0, 1], [0, 2, 1], 3)  # class 2 predicted, never true: F1 0 counts
    assert predicted_never_true.f1[2] == 0.0 and math.isnan(predicted_never_true.recall[2])
    assert predicted_never_true.uf1 == pytest.approx((2 / 3 + 1 + 0) / 3)
    never_predicted = score([0, 1, 2], [0, 0, 1], 3)  # class 2 true but never predicted
    assert never_predicted.f1[2] == 0.0 and never_predicted.recall[2] == 0.0


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="outside"):
        score([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="predictions"):
        score([0, 1], [0], 3)


def test_megc_log_roundtrip(tmp_path):
    rows = pd.DataFrame([("casme2", "sub01", "EP02_01f", 1, 1), ("casme2", "sub02", "EP01_11f", 0, 2),
                         ("samm", "006", "006_1_2", 0, 0)], columns=["db", "subject", "clip", "gt", "pred"])
    write_megc_log(rows, tmp_path / "log.txt")
    assert (tmp_path / "log.txt").read_text().splitlines()[:2] == ["casme2 sub01", "EP02_01f 1 1"]
    pd.testing.assert_frame_equal(read_megc_log(tmp_path / "log.txt"), rows)


def test_malformed_log_line_names_the_line(tmp_path):
    (tmp_path / "bad.txt").write_text("casme2 sub01\nEP02_01f 1 x\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        read_megc_log(tmp_path / "bad.txt")


@pytest.mark.realdata
def test_golden_ststnet_megc2019_log(annotations):
    rows = read_megc_log(annotations / "ststnet_megc2019_predictions_log.txt")
    scores = score_by_group(rows, 3, group="db")
    got = {k: (round(v.uf1, 4), round(v.uar, 4), v.n) for k, v in scores.items()}
    assert got == {"casme2": (0.8382, 0.8190, 145), "smic": (0.6801, 0.6703, 164),
                   "samm": (0.6588, 0.6415, 133), "all": (0.7353, 0.7186, 442)}
    # The published UAR figures of that method are its mean per-class precision, not recall.
    cm = scores["all"].confusion
    precision = np.diag(cm) / cm.sum(axis=0)
    assert round(float(precision.mean()), 4) == 0.7605


@pytest.mark.realdata
def test_golden_ststnet_pytorch_log(annotations):
    rows = read_subject_list_log(annotations / "ststnet_pytorch_predictions_log.txt")
    s = score(rows["gt"], rows["pred"], 3)
    assert (round(s.uf1, 4), round(s.uar, 4), s.n) == (0.7209, 0.7250, 442)


@pytest.mark.realdata
def test_metrics_command_prints_json(annotations, capsys):
    assert main(["metrics", "--megc-log", str(annotations / "ststnet_megc2019_predictions_log.txt")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["all"] == {"uf1": 0.7353, "uar": 0.7186, "n": 442}
    assert out["smic"] == {"uf1": 0.6801, "uar": 0.6703, "n": 164}
