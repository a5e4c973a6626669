"""Aggregation of fold predictions: pooled metrics, MEGC logs, per-subject scores, confusion outputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from selfme.metrics import read_megc_log, score
from selfme.metrics.aggregate import aggregate, read_folds

CLASSES = ("negative", "positive", "surprise")


def _fold(path, rows):
    pd.DataFrame(rows, columns=["clip", "label_id", "pred_id", "p_0", "p_1", "p_2"]).to_csv(path, index=False)


@pytest.fixture()
def results(tmp_path):
    (tmp_path / "results" / "casme2").mkdir(parents=True)
    (tmp_path / "results" / "smic_hs").mkdir(parents=True)
    _fold(tmp_path / "results/casme2/sub01.csv", [("EP01", 0, 0, .8, .1, .1), ("EP02", 1, 0, .5, .4, .1)])
    _fold(tmp_path / "results/casme2/sub02.csv", [("EP03", 2, 2, .1, .1, .8)])  # classes 0, 1 absent
    _fold(tmp_path / "results/smic_hs/s01.csv", [("s01_ne_01", 0, 1, .2, .7, .1), ("s01_po_01", 1, 1, .1, .8, .1),
                                                 ("s01_sur_01", 2, 2, .1, .1, .8)])
    return tmp_path


def test_summary_pools_folds_and_averages_datasets(results):
    summary = aggregate(results / "results", ["casme2", "smic_hs"], CLASSES, metrics_dir=results / "metrics")
    casme2 = score([0, 1, 2], [0, 0, 2], 3)  # pooled over both folds, not averaged per fold
    assert summary["casme2"] == {"uf1": round(casme2.uf1, 4), "uar": round(casme2.uar, 4), "n_samples": 3,
                                 "n_folds": 2}
    assert summary["smic_hs"]["n_folds"] == 1
    assert summary["average"]["uf1"] == round((summary["casme2"]["uf1"] + summary["smic_hs"]["uf1"]) / 2, 4)
    composite = score([0, 1, 2, 0, 1, 2], [0, 0, 2, 1, 1, 2], 3)
    assert summary["composite"]["uf1"] == round(composite.uf1, 4) and summary["composite"]["n_folds"] == 3
    assert json.loads((results / "metrics/summary.json").read_text()) == summary


def test_side_outputs(results):
    aggregate(results / "results", ["casme2", "smic_hs"], CLASSES, metrics_dir=results / "metrics")
    log = read_megc_log(results / "metrics/logs/smic_hs.txt")
    assert set(log["db"]) == {"smic"} and list(log["pred"]) == [1, 1, 2]
    per_subject = pd.read_csv(results / "metrics/per_subject/casme2.csv")
    assert list(per_subject["subject"]) == ["sub01", "sub02"] and list(per_subject["n"]) == [2, 1]
    confusion = pd.read_csv(results / "metrics/confusion/casme2.csv")
    assert confusion.to_dict("records")[1] == {"actual": "positive", "predicted": "negative"}
    png = (results / "metrics/plots/confusion/casme2.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_missing_or_malformed_folds_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the loso stage"):
        read_folds(tmp_path)
    pd.DataFrame({"clip": ["a"], "label": [0]}).to_csv(tmp_path / "sub01.csv", index=False)
    with pytest.raises(ValueError, match="label_id"):
        read_folds(tmp_path)


def test_average_over_named_datasets(results):
    summary = aggregate(results / "results", ["casme2", "smic_hs"], CLASSES, metrics_dir=results / "metrics",
                        average=["smic_hs"])
    assert summary["average"] == {"uf1": summary["smic_hs"]["uf1"], "uar": summary["smic_hs"]["uar"]}
    with pytest.raises(ValueError, match="not run"):
        aggregate(results / "results", ["casme2"], CLASSES, metrics_dir=results / "metrics", average=["samm"])
