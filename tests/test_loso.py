"""Leave-one-subject-out SCViT: folds, determinism, rerun skipping, the fold CSV contract, sources."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from loso_testing import LOSO, SCVIT, motion_index as _motion_index, one_torch_thread, run as _run  # noqa: F401
from loso_testing import random_samples as _random_samples
from selfme.scvit import SCViTConfig, load_samples, loso_folds, read_fold_csv
from selfme.scvit import cli as loso_cli
from selfme.scvit.sources import build_inputs, read_labels


def test_no_subject_is_in_train_and_test():
    subjects = ["a", "b", "a", "c", "b", "c", "c"]
    folds = loso_folds(subjects)
    assert [f.subject for f in folds] == ["a", "b", "c"]
    for fold in folds:
        assert {subjects[i] for i in fold.test} == {fold.subject}
        assert fold.subject not in {subjects[i] for i in fold.train}
        assert sorted([*fold.train, *fold.test]) == list(range(len(subjects)))


def test_tiny_loso_is_deterministic_and_follows_the_contract(tmp_path):
    samples = load_samples(_motion_index(tmp_path))
    first = _run(samples, tmp_path / "a")
    second = _run(samples, tmp_path / "b")
    for subject in ("s1", "s2", "s3"):
        a = (tmp_path / "a/toy/seed_0" / f"{subject}.csv").read_bytes()
        assert a == (tmp_path / "b/toy/seed_0" / f"{subject}.csv").read_bytes()
        fold = read_fold_csv(tmp_path / "a/toy/seed_0" / f"{subject}.csv")
        assert list(fold.columns) == ["clip", "label_id", "pred_id", "p_0", "p_1", "p_2"]
        assert fold["clip"].tolist() == ["EP00", "EP01", "EP02"] and fold["label_id"].tolist() == [0, 1, 2]
        probs = fold[["p_0", "p_1", "p_2"]].to_numpy()
        assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
        assert (fold["pred_id"] == probs.argmax(axis=1)).all()
    assert first.summary == second.summary and first.summary["toy"]["n_samples"] == 9
    assert set(first.summary) == {"toy", "average"}  # one dataset: no composite
    log = (tmp_path / "a/toy/seed_0/megc_log.txt").read_text().splitlines()
    assert log[0] == "toy s1" and log[1].split()[0] == "EP00" and len(log) == 12
    scores = json.loads((tmp_path / "a/toy/scores.json").read_text())
    assert scores["n_folds"] == 3 and scores["n_seeds"] == 1 and scores["uf1_std"] is None
    assert scores["protocol"] == "per_dataset" and list(scores["per_seed"]) == ["0"]


def _runs(seeds, subjects=("s1", "s2", "s3"), dataset="toy"):
    return tuple((seed, dataset, s) for seed in seeds for s in subjects)


def test_completed_runs_are_skipped_on_rerun_per_seed_and_fold(tmp_path):
    samples = load_samples(_motion_index(tmp_path))
    out = tmp_path / "results"
    assert _run(samples, out).ran == _runs([0])
    stamp = (out / "toy/seed_0/s2.csv").stat().st_mtime_ns
    again = _run(samples, out, loso={"workers": 3, "device": "cpu"})  # execution-only keys: still done
    assert again.ran == () and again.skipped == _runs([0])
    assert (out / "toy/seed_0/s2.csv").stat().st_mtime_ns == stamp
    more = _run(samples, out, loso={"seeds": [0, 1]})               # a new seed runs only its own folds
    assert more.ran == _runs([1]) and more.skipped == _runs([0]) and more.summary["toy"]["n_seeds"] == 2
    assert (out / "toy/seed_0/s2.csv").stat().st_mtime_ns == stamp
    (out / "toy/seed_1/s3.csv").unlink()                           # an interrupted run is redone
    assert _run(samples, out, loso={"seeds": [0, 1]}).ran == ((1, "toy", "s3"),)
    dropped = _run(samples, out, loso={"seeds": [1]})              # a seed left out: its folder goes
    assert dropped.ran == () and not (out / "toy/seed_0").exists()
    threaded = _run(samples, out, loso={"seeds": [1], "threads": 2})  # float sums follow the threads
    assert threaded.ran == _runs([1])
    assert _run(samples, out, loso={"seeds": [1]}, scvit={"omega": 0.0}).ran == _runs([1])  # a changed parameter


def test_parallel_workers_give_the_same_predictions(tmp_path):
    samples = load_samples(_motion_index(tmp_path))
    _run(samples, tmp_path / "serial")
    result = _run(samples, tmp_path / "parallel", loso={"workers": 2})
    assert sorted(result.ran) == list(_runs([0]))
    for subject in ("s1", "s2", "s3"):
        assert (tmp_path / "serial/toy/seed_0" / f"{subject}.csv").read_bytes() == \
               (tmp_path / "parallel/toy/seed_0" / f"{subject}.csv").read_bytes()


def test_image_folder_with_labels_and_the_command(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for subject in ("sub01", "sub02"):
        for k in range(3):
            cv2.imwrite(str(images / f"{subject}_EP0{k}_01f.png"), rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
            rows.append(f"casme2,{subject},EP0{k}_01f,{k}")
    rows.append("smic,s01,s01_ne_01,0")  # another database: filtered out by --dataset
    (tmp_path / "gt.csv").write_text("\n".join(rows) + "\n")
    samples = load_samples(images, labels=tmp_path / "gt.csv", dataset="casme2")
    assert len(samples) == 6 and samples.kind == "image" and set(samples.frame["db"]) == {"casme2"}
    x, channels = build_inputs(samples, SCViTConfig(**SCVIT).input_config())
    assert x.shape == (6, 3, 32, 32) and channels == ("u", "v", "strain")

    parser = argparse.ArgumentParser()
    loso_cli.register(parser.add_subparsers())
    sets = [f"scvit.{k}={v}" for k, v in SCVIT.items()] + [f"loso.{k}={v}" for k, v in LOSO.items()]
    args = parser.parse_args(["loso", "--motions", str(images), "--labels", str(tmp_path / "gt.csv"),
                              "--out", str(tmp_path / "out"), "--dataset", "casme2", "--no-progress",
                              "--params", str(tmp_path / "none.yaml")] + sum([["-S", s] for s in sets], []))
    (tmp_path / "none.yaml").write_text("{}\n")
    assert args.func(args) == 0
    assert "UF1" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out/casme2/seed_0").glob("*.csv")) == ["sub01.csv", "sub02.csv"]
    assert (tmp_path / "out/casme2/seed_0/megc_log.txt").read_text().startswith("casme2 sub01\n")
    assert set(json.loads((tmp_path / "out/summary.json").read_text())) == {"casme2", "average"}


def test_labels_csv_with_header_and_class_names(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("dataset,subject,clip,label\nsmic,s01,s01_po_01,positive\nsmic,s01,s01_sur_01,surprise\n")
    assert read_labels(path)["label_id"].tolist() == [1, 2]
    path.write_text("dataset,subject,clip,label\nsmic,s01,x,joy\n")
    with pytest.raises(ValueError, match="joy"):
        read_labels(path)


def test_dataset_choice_and_missing_images(tmp_path, caplog):
    (tmp_path / "images").mkdir()
    (tmp_path / "gt.csv").write_text("casme2,sub01,EP01,0\nsmic,s01,s01_ne_01,0\nsmic,s01,s01_po_01,1\n"
                                     "samm,006,006_1_2,1\n")
    with pytest.raises(FileNotFoundError, match="no image"):
        load_samples(tmp_path / "images", labels=tmp_path / "gt.csv", dataset="casme2")
    for name in ("sub01_EP01.png", "s01_s01_ne_01.png", "s01_s01_po_01.png"):
        cv2.imwrite(str(tmp_path / "images" / name), np.zeros((4, 4, 3), np.uint8))
    both = load_samples(tmp_path / "images", labels=tmp_path / "gt.csv")  # samm has no image at all: left out
    assert both.datasets == ["casme2", "smic"] and len(both) == 3 and "samm: 1 labelled" in caplog.text
    assert load_samples(tmp_path / "images", labels=tmp_path / "gt.csv", dataset="casme2,smic_hs").datasets == \
        ["casme2", "smic"]
    with pytest.raises(FileNotFoundError, match="006_006_1_2.png"):  # a dataset asked for needs every image
        load_samples(tmp_path / "images", labels=tmp_path / "gt.csv", dataset=["smic", "samm"])
    (tmp_path / "images/s01_s01_po_01.png").unlink()                  # part of a dataset missing: an error
    with pytest.raises(FileNotFoundError, match="s01_s01_po_01.png"):
        load_samples(tmp_path / "images", labels=tmp_path / "gt.csv")


@pytest.mark.realdata
def test_real_composite_flow_images(realdata, annotations):
    folder, gt = realdata / "composite_flow_28px", annotations / "megc2019_combined_3class_gt.csv"
    casme2 = load_samples(folder, labels=gt, dataset="casme2")
    smic = load_samples(folder, labels=gt, dataset="smic_hs")
    assert (len(casme2), casme2.frame["subject"].nunique()) == (145, 24)
    assert (len(smic), smic.frame["subject"].nunique()) == (164, 16)
    assert casme2.frame["label_id"].value_counts().sort_index().tolist() == [88, 32, 25]
    assert set(smic.frame["db"]) == {"smic"}
    x, _ = build_inputs(smic, SCViTConfig(**SCVIT).input_config())
    assert x.shape == (164, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    pooled = load_samples(folder, labels=gt)  # the composite pool: SAMM has no images here
    assert pooled.datasets == ["casme2", "smic"] and len(pooled) == 309
    assert len(loso_folds(pooled.frame["subject"], pooled.frame["dataset"], protocol="composite")) == 40


def test_stage_reads_params_yaml(tmp_path, monkeypatch):
    index = _motion_index(tmp_path, subjects=("s1", "s2"), clips=3)
    params = {"scvit": SCVIT, "loso": LOSO, "prepare": {"protocol": "megc3"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # the stages/ scripts
    from stages.loso import main as stage_main

    assert stage_main(["--dataset", "toy", "--motions", str(index)]) == 0
    assert sorted(p.name for p in (tmp_path / "results/toy/seed_0").glob("*.csv")) == ["s1.csv", "s2.csv"]
    record = json.loads((tmp_path / "results/toy/seed_0/folds/s1.json").read_text())
    assert record["n_train"] == 3 and record["train_subjects"] == ["toy/s2"]


def test_pretrained_weights_file_keys_the_folds(tmp_path):
    import timm
    import torch

    samples = load_samples(_motion_index(tmp_path, subjects=("s1", "s2"), clips=3))
    weights = tmp_path / "vit_tiny.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict(), weights)
    pretrained = {"pretrained": True, "weights_file": str(weights), "embed_dim": None, "num_heads": None}
    out = tmp_path / "results"
    assert _run(samples, out, scvit=pretrained).ran == _runs([0], ("s1", "s2"))
    assert _run(samples, out, scvit=pretrained).ran == ()
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict(), weights)  # new weights
    assert _run(samples, out, scvit=pretrained).ran == _runs([0], ("s1", "s2"))


def test_tta_hflip_predicts_the_mean_of_a_sample_and_its_mirror(tmp_path, monkeypatch):
    """loso.tta_hflip: a fold's written probabilities are (p(x) + p(m(x))) / 2, with m the mirror written
    out here: columns reversed and the dx channel (0 of dx, dy, mag) negated. The stand-in predictor is
    not mirror-symmetric (it reads dx on the left half), so a missing or wrong mirror changes the CSV."""
    import torch

    import selfme.scvit.loso as loso

    def fake_predict(model, x, *, device, batch_size=64):
        half = x.shape[3] // 2
        logits = torch.stack([x[:, 0, :, :half].mean((1, 2)) * 50, x[:, 1].mean((1, 2)) * 50,
                              torch.zeros(len(x))], dim=1)
        return torch.softmax(logits.double(), dim=1).numpy()

    def mirror(x):
        out = x.flip(3).clone()
        out[:, 0] = -out[:, 0]
        return out

    monkeypatch.setattr(loso, "predict", fake_predict)
    samples = _random_samples(tmp_path)
    _run(samples, tmp_path / "tta", loso={"epochs": 1, "tta_hflip": True})
    _run(samples, tmp_path / "plain", loso={"epochs": 1})
    x, channels = build_inputs(samples, SCViTConfig(**SCVIT).input_config())
    assert channels[0] == "dx"
    clips = (samples.frame["subject"] + "/" + samples.frame["clip"]).tolist()
    want = (fake_predict(None, x, device=None) + fake_predict(None, mirror(x), device=None)) / 2
    plain = fake_predict(None, x, device=None)
    for name, expected in (("tta", want), ("plain", plain)):
        for subject in ("s0", "s1", "s2", "s3"):
            frame = read_fold_csv(next((tmp_path / name).rglob(f"{subject}.csv")))
            rows = [clips.index(f"{subject}/{c}") for c in frame["clip"]]
            got = frame[[f"p_{c}" for c in range(3)]].to_numpy()
            np.testing.assert_allclose(got, expected[rows], atol=1e-6)
    assert not np.allclose(want, plain, atol=1e-3)  # the mirror does change this predictor's output
