"""The composite LOSO protocol (MEGC2019: datasets pooled, one fold per (dataset, subject)) and seeds."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pytest
import yaml

from loso_testing import LOSO, SCVIT, image_folder, motion_index, one_torch_thread, run  # noqa: F401
from selfme.metrics import score
from selfme.scvit import LosoConfig, combine_samples, load_samples, loso_folds, read_fold_csv, seed_dir
from selfme.scvit import cli as loso_cli

REPO = Path(__file__).resolve().parents[1]


def test_composite_folds_keep_colliding_subject_ids_apart():
    # CASME II and SMIC both have a subject called sub01: two people, two folds.
    datasets = ["casme2", "casme2", "smic", "smic", "casme2", "smic"]
    subjects = ["sub01", "sub02", "sub01", "s02", "sub01", "sub01"]
    folds = loso_folds(subjects, datasets, protocol="composite")
    assert [f.name for f in folds] == ["casme2/sub01", "casme2/sub02", "smic/sub01", "smic/s02"]
    ids = [f"{d}/{s}" for d, s in zip(datasets, subjects)]
    for fold in folds:
        assert {ids[i] for i in fold.test} == {fold.name}
        assert fold.name not in {ids[i] for i in fold.train}
        assert sorted([*fold.train, *fold.test]) == list(range(len(ids)))  # composite: everyone else trains
    casme_sub01 = folds[0]
    assert casme_sub01.test.tolist() == [0, 4] and casme_sub01.train.tolist() == [1, 2, 3, 5]  # smic sub01 trains
    per_dataset = loso_folds(subjects, datasets, protocol="per_dataset")
    assert [f.name for f in per_dataset] == [f.name for f in folds]
    assert per_dataset[0].train.tolist() == [1] and per_dataset[2].train.tolist() == [3]  # own dataset only
    with pytest.raises(ValueError, match="protocol"):
        loso_folds(subjects, datasets, protocol="pooled")


def test_seeds_and_protocol_are_checked_and_the_seed_list_does_not_key_a_run():
    assert LosoConfig(seeds=[2, 0]).seeds == (2, 0)
    for bad in ([], [0, 0], "0", 3, [-1]):
        with pytest.raises(ValueError, match="loso.seeds"):
            LosoConfig(seeds=bad)
    with pytest.raises(ValueError, match="loso.protocol"):
        LosoConfig(protocol="pooled")
    assert LosoConfig(seeds=[0]).result_key() == LosoConfig(seeds=[0, 1, 2]).result_key()
    assert LosoConfig(protocol="composite").result_key() != LosoConfig().result_key()
    with pytest.raises(ValueError, match="loso.seed: unknown key"):
        LosoConfig.from_mapping({"seed": 0})


def _pool(tmp_path):
    """Datasets a and b with the SAME subject ids and clip names (and different motions)."""
    a = load_samples(motion_index(tmp_path / "a", ("s1", "s2"), dataset="a", seed=1))
    b = load_samples(motion_index(tmp_path / "b", ("s1", "s2"), dataset="b", seed=2))
    return combine_samples([a, b])


def _seed_values(out, dataset, seeds, subjects=("s1", "s2")):
    """Per seed: UF1/UAR of the dataset's fold CSVs, pooled over its folds (scored here from the files)."""
    values = []
    for seed in seeds:
        folds = [read_fold_csv(seed_dir(out, dataset, seed) / f"{s}.csv") for s in subjects]
        gt = [v for f in folds for v in f["label_id"]]
        pred = [v for f in folds for v in f["pred_id"]]
        s = score(gt, pred, 3)
        values.append((s.uf1, s.uar, gt, pred))
    return values


def test_composite_run_holds_out_each_subject_and_scores_slices_and_whole(tmp_path):
    samples = _pool(tmp_path)
    assert len(samples) == 12 and samples.frame.duplicated(["subject", "clip"]).sum() == 6  # ids collide
    out = tmp_path / "out"
    result = run(samples, out, loso={"protocol": "composite", "seeds": [0, 1]})
    assert len(result.ran) == 8 and set(result.summary) == {"a", "b", "average", "composite"}
    for dataset in ("a", "b"):
        for seed in (0, 1):
            for subject in ("s1", "s2"):
                record = json.loads((seed_dir(out, dataset, seed) / "folds" / f"{subject}.json").read_text())
                others = sorted({"a/s1", "a/s2", "b/s1", "b/s2"} - {f"{dataset}/{subject}"})
                assert record["train_subjects"] == others and record["n_train"] == 9 and record["n_test"] == 3
    # Each dataset's figure is its slice of the composite run: pooled per seed, then mean and sample std.
    for dataset in ("a", "b"):
        per_seed = _seed_values(out, dataset, (0, 1))
        entry = result.summary[dataset]
        assert entry["uf1"] == round(statistics.mean(v[0] for v in per_seed), 4)
        assert entry["uf1_std"] == round(statistics.stdev(v[0] for v in per_seed), 4)
        assert entry["uar"] == round(statistics.mean(v[1] for v in per_seed), 4)
        assert (entry["n_samples"], entry["n_folds"], entry["n_seeds"]) == (6, 2, 2)
    both = [score(a[2] + b[2], a[3] + b[3], 3) for a, b in zip(_seed_values(out, "a", (0, 1)),
                                                               _seed_values(out, "b", (0, 1)))]
    composite = result.summary["composite"]
    assert composite["uf1"] == round(statistics.mean(s.uf1 for s in both), 4)
    assert composite["uar_std"] == round(statistics.stdev(s.uar for s in both), 4)
    assert (composite["n_samples"], composite["n_folds"]) == (12, 4)
    assert (out / "b/seed_1/megc_log.txt").read_text().startswith("b s1\nEP00 0 ")
    # The same pool per dataset: a fold trains on its own dataset only.
    alone = run(samples, tmp_path / "alone", loso={"seeds": [0]})
    record = json.loads((tmp_path / "alone/a/seed_0/folds/s1.json").read_text())
    assert record["train_subjects"] == ["a/s2"] and record["n_train"] == 3 and len(alone.ran) == 4


def test_command_composite_on_an_image_folder_with_two_dbs(tmp_path, capsys):
    rows = [("casme2", "sub01", f"EP0{k}_01f", k) for k in range(3)] + \
           [("casme2", "sub02", f"EP1{k}_01f", k) for k in range(3)] + \
           [("smic", "sub01", f"sub01_x_0{k}", k) for k in range(3)] + \
           [("smic", "s02", f"s02_x_0{k}", k) for k in range(3)]  # smic's sub01 collides with CASME II's
    images, labels = image_folder(tmp_path, rows)
    parser = argparse.ArgumentParser()
    loso_cli.register(parser.add_subparsers())
    sets = [f"scvit.{k}={v}" for k, v in SCVIT.items()] + [f"loso.{k}={v}" for k, v in LOSO.items()]
    (tmp_path / "none.yaml").write_text("{}\n")
    args = parser.parse_args(["loso", "--motions", str(images), "--labels", str(labels), "--out", str(tmp_path / "out"),
                              "--protocol", "composite", "--no-progress", "--params", str(tmp_path / "none.yaml")]
                             + sum([["-S", s] for s in sets], []) + ["-S", "loso.seeds=[0, 1]"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "LOSO composite: UF1 " in printed and " ± " in printed and "8 run(s) trained" in printed
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert list(summary) == ["casme2", "smic", "average", "composite"]
    assert summary["composite"]["n_folds"] == 4 and summary["composite"]["n_samples"] == 12
    assert summary["smic"]["n_seeds"] == 2 and summary["smic"]["n_folds"] == 2
    for seed in (0, 1):
        assert sorted(p.name for p in (tmp_path / f"out/smic/seed_{seed}").glob("*.csv")) == ["s02.csv", "sub01.csv"]
    smic_sub01 = json.loads((tmp_path / "out/smic/seed_0/folds/sub01.json").read_text())
    assert smic_sub01["train_subjects"] == ["casme2/sub01", "casme2/sub02", "smic/s02"]
    assert smic_sub01["protocol"] == "composite"
    assert read_fold_csv(tmp_path / "out/smic/seed_0/sub01.csv")["clip"].tolist() == \
        ["sub01_x_00", "sub01_x_01", "sub01_x_02"]


def test_pipeline_stages_together_are_one_composite_run(tmp_path, monkeypatch):
    for name, seed in (("a", 1), ("b", 2)):
        motion_index(tmp_path / "data" / name, ("s1", "s2"), dataset=name, seed=seed)
    loso = {**LOSO, "protocol": "composite", "seeds": [0, 1]}
    params = {"scvit": SCVIT, "loso": loso, "prepare": {"protocol": "megc3"}, "datasets": {"a": {}, "b": {}},
              "aggregate": {"average": None}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(REPO))  # the stages/ scripts
    from stages.aggregate import main as aggregate_main
    from stages.loso import main as loso_main

    for name in ("a", "b"):
        assert loso_main(["--dataset", name, "--motions", "data/{dataset}/index.csv"]) == 0
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["a", "b"]  # nothing outside the outs
    assert aggregate_main([]) == 0
    summary = json.loads((tmp_path / "metrics/summary.json").read_text())
    assert summary["composite"]["n_folds"] == 4 and summary["composite"]["n_seeds"] == 2
    # The union of the stages is the composite run of the pooled datasets, file for file.
    pooled = combine_samples([load_samples(tmp_path / f"data/{n}/index.csv") for n in ("a", "b")])
    direct = run(pooled, tmp_path / "direct", loso=loso)
    for name in ("a", "b"):
        for seed in (0, 1):
            for subject in ("s1", "s2"):
                assert (seed_dir("results", name, seed) / f"{subject}.csv").read_bytes() == \
                       (seed_dir(tmp_path / "direct", name, seed) / f"{subject}.csv").read_bytes()
        assert summary[name] == direct.summary[name]
    assert summary["composite"] == direct.summary["composite"]
    assert (tmp_path / "metrics/logs/seed_1/b.txt").read_text().startswith("b s1\n")
    per_seed = (tmp_path / "metrics/per_seed.csv").read_text().splitlines()
    assert per_seed[0] == "scope,seed,uf1,uar,n_samples,n_folds" and len(per_seed) == 1 + 2 * 4
