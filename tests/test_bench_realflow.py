"""bench/bench_realflow.py's seed ensemble: the mean of the seeds' fold probabilities, scored as MEGC2019."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_realflow", REPO / "bench" / "bench_realflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_ensemble_scores_the_mean_softmax(tmp_path):
    from selfme.scvit.sources import Samples

    # (subject, clip, label): two seeds' probabilities; the mean's argmax in the comment
    rows = [("s0", "c0", 0, (0.9, 0.05, 0.05), (0.2, 0.7, 0.1)),    # (0.55, 0.375, 0.075) -> 0
            ("s0", "c1", 1, (0.6, 0.4, 0.0), (0.0, 0.9, 0.1)),      # (0.3, 0.65, 0.05) -> 1
            ("s1", "c2", 2, (0.1, 0.1, 0.8), (0.1, 0.5, 0.4)),      # (0.1, 0.3, 0.6) -> 2
            ("s1", "c3", 0, (0.4, 0.6, 0.0), (0.45, 0.55, 0.0))]    # (0.425, 0.575, 0) -> 1, wrong
    for seed in (0, 1):
        for subject in ("s0", "s1"):
            mine = [r for r in rows if r[0] == subject]
            frame = pd.DataFrame({"clip": [r[1] for r in mine], "label_id": [r[2] for r in mine],
                                  "pred_id": [max(range(3), key=r[3 + seed].__getitem__) for r in mine]})
            for c in range(3):
                frame[f"p_{c}"] = [r[3 + seed][c] for r in mine]
            folder = tmp_path / "casme2" / f"seed_{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            frame.to_csv(folder / f"{subject}.csv", index=False)
    samples = Samples(pd.DataFrame({"dataset": "casme2", "db": "casme2", "subject": [r[0] for r in rows],
                                    "clip": [r[1] for r in rows], "label_id": [r[2] for r in rows],
                                    "path": "x.png"}), "image")
    scores = _bench().seed_ensemble(tmp_path, samples, [0, 1])
    # predictions 0, 1, 2, 1 against 0, 1, 2, 0: F1 per class 2/3, 2/3, 1; recall 1/2, 1, 1
    assert scores["casme2"]["uf1_ens"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, abs=1e-4)
    assert scores["casme2"]["uar_ens"] == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-4)
    # one seed alone scores its own predictions: seed 1 says 1 for every clip (F1 0, 0.4, 0; recall 0, 1, 0)
    alone = _bench().seed_ensemble(tmp_path, samples, [1])["casme2"]
    assert alone["uf1_ens"] == pytest.approx(0.4 / 3, abs=1e-4) and alone["uar_ens"] == pytest.approx(1 / 3, abs=1e-4)


def test_kept_results_are_the_earlier_rows_not_run_now(tmp_path):
    """--rows runs some rows and keeps the others' earlier results, but only rows the table still has."""
    bench = _bench()
    earlier = {"results": {"a": {"composite": {"scores": 1}}, "b": {"per_dataset": {"scores": 2}},
                           "gone": {"composite": {"scores": 3}}}}
    path = tmp_path / "realflow.json"
    path.write_text(json.dumps(earlier), encoding="utf-8")
    table = {"a": ("A", "f", []), "b": ("B", "f", [])}
    assert bench.kept_results(path, table, {"a"}) == {"b": {"per_dataset": {"scores": 2}}}
    assert bench.kept_results(path, table, {"a", "b"}) == {}
    assert bench.kept_results(tmp_path / "absent.json", table, set()) == {}


def test_the_recipe_row_is_round_seven_winner_and_the_default_rows_exist():
    """configs/realflow.yaml as it is (the ``recipe`` row) is the tuning candidate r2_v3_tta, round 7's
    CASME II winner, and the recipe_v3 row is round 6's z1_e120 (= r1_v3); the no-SC row differs from the
    recipe in omega only (sc_features is moot without SC); a plain run trains rows the table has."""
    from selfme.scvit.cli import apply_overrides, read_params

    bench = _bench()

    def effective(row):
        params = apply_overrides(read_params(REPO / row[1]), row[2])
        return {k: params[k] for k in ("scvit", "loso")}

    recipe = effective(bench.ROWS["recipe"])
    assert recipe == effective(bench.TUNING["r2_v3_tta"])
    assert recipe["loso"]["epochs"] == 120 and recipe["loso"]["tta_hflip"] is True
    v3 = effective(bench.ROWS["recipe_v3"])
    assert v3 == effective(bench.TUNING["z1_e120"]) == effective(bench.TUNING["r1_v3"])
    assert v3["loso"] == {**recipe["loso"], "tta_hflip": False} and v3["scvit"] == recipe["scvit"]
    nosc = effective(bench.ROWS["recipe_nosc"])
    assert nosc["scvit"]["omega"] == 0.0
    assert {k: v for k, v in nosc["scvit"].items() if k not in ("omega", "sc_features")} == \
        {k: v for k, v in recipe["scvit"].items() if k not in ("omega", "sc_features")}
    assert nosc["loso"] == recipe["loso"]
    assert set(bench.DEFAULT_ROWS) <= set(bench.ROWS)
    before_v4 = [k for k in bench.ROWS if k not in ("recipe", "recipe_nosc") and not k.startswith("ststnet")]
    assert all(effective(bench.ROWS[k])["loso"]["tta_hflip"] is False for k in before_v4)  # they mean what they meant


def _seeds_script():
    spec = importlib.util.spec_from_file_location("realflow_seeds", REPO / "bench" / "realflow_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pooled_seeds_are_the_mean_and_std_of_all_values():
    import numpy as np

    a, b = [0.81, 0.77, 0.84], [0.79, 0.86]
    groups = [(len(g), float(np.mean(g)), float(np.std(g, ddof=1))) for g in (a, b)]
    n, mean, std = _seeds_script().pooled(groups)
    assert n == 5 and mean == pytest.approx(np.mean(a + b)) and std == pytest.approx(np.std(a + b, ddof=1))


def test_runs_sharing_a_seed_are_refused():
    cell = {"uf1": 0.8, "uf1_std": 0.01, "uf1_ens": 0.81, "n_seeds": 3}
    run = {"seeds": [0, 1, 2], "results": {r: {p: {"scores": {s: cell for s in ("casme2", "smic", "composite")}}
                                               for p in ("per_dataset", "composite")} for r in ("a", "b")}}
    with pytest.raises(ValueError, match="share seeds"):
        _seeds_script().table([run, run], ["a", "b"])
    other = {**run, "seeds": [3, 4, 5]}
    text = _seeds_script().table([run, other], ["a", "b"])
    assert "| per_dataset | casme2 | 0.800 ± 0.009 (0.810, 0.810) |" in text and "+0.000 ± 0.005" in text
