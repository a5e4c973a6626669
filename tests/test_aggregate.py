"""Aggregation of fold predictions: pooled metrics, MEGC logs, per-subject scores, confusion outputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from selfme.metrics import read_megc_log, score
from selfme.metrics.aggregate import aggregate, read_folds, read_seeds

CLASSES = ("negative", "positive", "surprise")


def _fold(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["clip", "label_id", "pred_id", "p_0", "p_1", "p_2"]).to_csv(path, index=False)


@pytest.fixture()
def results(tmp_path):
    for seed in (0, 1):  # seed 1 differs from seed 0 only in casme2's EP02
        _fold(tmp_path / f"results/casme2/seed_{seed}/sub01.csv",
              [("EP01", 0, 0, .8, .1, .1), ("EP02", 1, seed, .5, .4, .1)])
        _fold(tmp_path / f"results/casme2/seed_{seed}/sub02.csv", [("EP03", 2, 2, .1, .1, .8)])  # classes 0, 1 absent
        _fold(tmp_path / f"results/smic_hs/seed_{seed}/s01.csv",
              [("s01_ne_01", 0, 1, .2, .7, .1), ("s01_po_01", 1, 1, .1, .8, .1), ("s01_sur_01", 2, 2, .1, .1, .8)])
    return tmp_path


def test_summary_pools_folds_per_seed_then_averages_seeds(results):
    summary = aggregate(results / "results", ["casme2", "smic_hs"], CLASSES, metrics_dir=results / "metrics")
    # casme2, pooled over both folds (not averaged per fold):
    #   seed 0: gt [0, 1, 2], pred [0, 0, 2]: F1 = (2/3, 0, 1) -> UF1 5/9; recall (1, 0, 1) -> UAR 2/3
    #   seed 1: gt [0, 1, 2], pred [0, 1, 2]: UF1 1, UAR 1
    #   mean UF1 (5/9 + 1) / 2 = 7/9 = 0.7778; sample std |1 - 5/9| / sqrt(2) = 0.3143
    #   mean UAR 5/6 = 0.8333; sample std (1/3) / sqrt(2) = 0.2357
    assert score([0, 1, 2], [0, 0, 2], 3).uf1 == pytest.approx(5 / 9)
    assert summary["casme2"] == {"uf1": 0.7778, "uf1_std": 0.3143, "uar": 0.8333, "uar_std": 0.2357, "n_seeds": 2,
                                 "n_samples": 3, "n_folds": 2}
    # smic_hs, both seeds gt [0, 1, 2], pred [1, 1, 2]: F1 (0, 2/3, 1) -> 5/9, recall (0, 1, 1) -> 2/3; std 0
    assert summary["smic_hs"] == {"uf1": 0.5556, "uf1_std": 0.0, "uar": 0.6667, "uar_std": 0.0, "n_seeds": 2,
                                  "n_samples": 3, "n_folds": 1}
    # average per seed: seed 0 (5/9 + 5/9) / 2 = 5/9, seed 1 (1 + 5/9) / 2 = 7/9 -> mean 2/3, std (2/9) / sqrt(2)
    assert summary["average"] == {"uf1": 0.6667, "uf1_std": 0.1571, "uar": 0.75, "uar_std": 0.1179, "n_seeds": 2}
    # composite per seed, all six samples pooled:
    #   seed 0: gt [0, 1, 2, 0, 1, 2], pred [0, 0, 2, 1, 1, 2]: class 0 TP 1 FP 1 FN 1 -> 1/2; class 1 TP 1 FP 1
    #   FN 1 -> 1/2; class 2 -> 1: UF1 2/3; UAR (1/2 + 1/2 + 1) / 3 = 2/3
    #   seed 1: pred [0, 1, 2, 1, 1, 2]: class 0 TP 1 FN 1 -> 2/3; class 1 TP 2 FP 1 -> 4/5; class 2 -> 1:
    #   UF1 (2/3 + 4/5 + 1) / 3 = 0.8222; UAR (1/2 + 1 + 1) / 3 = 5/6
    seed0, seed1 = score([0, 1, 2, 0, 1, 2], [0, 0, 2, 1, 1, 2], 3), score([0, 1, 2, 0, 1, 2], [0, 1, 2, 1, 1, 2], 3)
    assert (seed0.uf1, seed1.uf1) == (pytest.approx(2 / 3), pytest.approx(37 / 45))
    assert summary["composite"] == {"uf1": round((2 / 3 + 37 / 45) / 2, 4),
                                    "uf1_std": round((37 / 45 - 2 / 3) / 2 ** .5, 4),
                                    "uar": 0.75, "uar_std": round((5 / 6 - 2 / 3) / 2 ** .5, 4), "n_seeds": 2,
                                    "n_samples": 6, "n_folds": 3}
    assert json.loads((results / "metrics/summary.json").read_text()) == summary
    per_seed = pd.read_csv(results / "metrics/per_seed.csv")
    assert per_seed[per_seed["scope"] == "casme2"]["uf1"].round(4).tolist() == [0.5556, 1.0]


def test_seed_choice_and_single_seed(results):
    one = aggregate(results / "results", ["casme2", "smic_hs"], CLASSES, metrics_dir=results / "m1", seeds=[0])
    assert one["casme2"]["uf1"] == round(5 / 9, 4) and one["casme2"]["uf1_std"] is None  # one seed: no spread
    assert one["casme2"]["n_seeds"] == 1
    with pytest.raises(FileNotFoundError, match="seed_2"):
        aggregate(results / "results", ["casme2"], CLASSES, metrics_dir=results / "m2", seeds=[0, 2])
    (results / "results/smic_hs/seed_1/s01.csv").unlink()
    (results / "results/smic_hs/seed_1").rmdir()
    with pytest.raises(ValueError, match="different seeds"):
        aggregate(results / "results", ["casme2", "smic_hs"], CLASSES, metrics_dir=results / "m3")


def test_side_outputs(results):
    aggregate(results / "results", ["casme2", "smic_hs"], CLASSES, metrics_dir=results / "metrics", seeds=[1, 0])
    for seed in (0, 1):
        log = read_megc_log(results / f"metrics/logs/seed_{seed}/smic_hs.txt")
        assert set(log["db"]) == {"smic"} and list(log["pred"]) == [1, 1, 2]
    assert list(read_megc_log(results / "metrics/logs/seed_1/casme2.txt")["pred"]) == [0, 1, 2]
    per_subject = pd.read_csv(results / "metrics/per_subject/casme2.csv")
    assert list(per_subject["seed"]) == [0, 0, 1, 1] and list(per_subject["subject"]) == ["sub01", "sub02"] * 2
    assert list(per_subject["n"]) == [2, 1, 2, 1] and list(per_subject["accuracy"]) == [0.5, 1.0, 1.0, 1.0]
    confusion = pd.read_csv(results / "metrics/confusion/casme2.csv")  # the first seed of the list: 1
    assert confusion.to_dict("records")[1] == {"actual": "positive", "predicted": "positive"}
    png = (results / "metrics/plots/confusion/casme2.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_missing_or_malformed_folds_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the loso stage"):
        read_folds(tmp_path)
    with pytest.raises(FileNotFoundError, match="seed_<s>"):
        read_seeds(tmp_path)
    pd.DataFrame({"clip": ["a"], "label": [0]}).to_csv(tmp_path / "sub01.csv", index=False)
    with pytest.raises(ValueError, match="label_id"):
        read_folds(tmp_path)


def test_average_over_named_datasets(results):
    summary = aggregate(results / "results", ["casme2", "smic_hs"], CLASSES, metrics_dir=results / "metrics",
                        average=["smic_hs"])
    assert summary["average"] == {k: summary["smic_hs"][k] for k in ("uf1", "uf1_std", "uar", "uar_std", "n_seeds")}
    with pytest.raises(ValueError, match="not run"):
        aggregate(results / "results", ["casme2"], CLASSES, metrics_dir=results / "metrics", average=["samm"])
