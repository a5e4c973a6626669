"""Leave-one-subject-out SCViT: folds, determinism, rerun skipping, the fold CSV contract, sources."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from selfme.scvit import SCViTConfig, LosoConfig, load_samples, loso_folds, read_fold_csv, run_loso
from selfme.scvit import cli as loso_cli
from selfme.scvit.sources import build_inputs, read_labels

SCVIT = dict(model_name="vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, embed_dim=32, num_heads=2,
             pretrained=False, omega=0.1, tau=0.07)
LOSO = dict(epochs=2, batch_size=4, lr=1e-3, gamma_lr=0.9, seed=0, workers=1, device="cpu", threads=1)


def _motion_index(root, subjects=("s1", "s2", "s3"), clips=3):
    """Class-dependent displacement fields in a motion index CSV (manifest columns + motion_path)."""
    rng = np.random.default_rng(0)
    rows = []
    for subject in subjects:
        for k in range(clips):
            label = k % 3
            field = rng.normal(scale=0.1, size=(16, 16, 2)).astype(np.float32)
            field[label * 5:label * 5 + 5, :, 1] += 1.0
            path = root / "motion" / subject / f"EP{k:02d}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, field.astype(np.float16))
            rows.append({"dataset": "toy", "subject": subject, "clip": f"EP{k:02d}", "label": "x",
                         "label_id": label, "motion_path": str(path)})
    index = root / "index.csv"
    pd.DataFrame(rows).to_csv(index, index=False)
    return index


def _run(samples, out, scvit=None, loso=None):
    return run_loso(samples, out=out, model_config=SCViTConfig(**{**SCVIT, **(scvit or {})}),
                    config=LosoConfig(**{**LOSO, **(loso or {})}), num_classes=3, progress=False)


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
        a = (tmp_path / "a" / f"{subject}.csv").read_bytes()
        assert a == (tmp_path / "b" / f"{subject}.csv").read_bytes()
        fold = read_fold_csv(tmp_path / "a" / f"{subject}.csv")
        assert list(fold.columns) == ["clip", "label_id", "pred_id", "p_0", "p_1", "p_2"]
        assert fold["clip"].tolist() == ["EP00", "EP01", "EP02"] and fold["label_id"].tolist() == [0, 1, 2]
        probs = fold[["p_0", "p_1", "p_2"]].to_numpy()
        assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
        assert (fold["pred_id"] == probs.argmax(axis=1)).all()
    assert first.scores.uf1 == second.scores.uf1 and first.scores.n == 9
    log = (tmp_path / "a" / "megc_log.txt").read_text().splitlines()
    assert log[0] == "toy s1" and log[1].split()[0] == "EP00" and len(log) == 12
    assert json.loads((tmp_path / "a" / "scores.json").read_text())["n_folds"] == 3


def test_completed_folds_are_skipped_on_rerun(tmp_path):
    samples = load_samples(_motion_index(tmp_path))
    out = tmp_path / "results"
    assert _run(samples, out).ran == ("s1", "s2", "s3")
    stamp = (out / "s2.csv").stat().st_mtime_ns
    again = _run(samples, out, loso={"workers": 3, "threads": 2})  # execution-only keys: still done
    assert again.ran == () and again.skipped == ("s1", "s2", "s3")
    assert (out / "s2.csv").stat().st_mtime_ns == stamp
    (out / "s3.csv").unlink()                                      # an interrupted fold is redone
    assert _run(samples, out).ran == ("s3",)
    assert _run(samples, out, scvit={"omega": 0.0}).ran == ("s1", "s2", "s3")  # a changed parameter: all


def test_parallel_workers_give_the_same_predictions(tmp_path):
    samples = load_samples(_motion_index(tmp_path))
    _run(samples, tmp_path / "serial")
    result = _run(samples, tmp_path / "parallel", loso={"workers": 2})
    assert sorted(result.ran) == ["s1", "s2", "s3"]
    for subject in ("s1", "s2", "s3"):
        assert (tmp_path / "serial" / f"{subject}.csv").read_bytes() == \
               (tmp_path / "parallel" / f"{subject}.csv").read_bytes()


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
    assert sorted(p.name for p in (tmp_path / "out").glob("*.csv")) == ["sub01.csv", "sub02.csv"]
    assert (tmp_path / "out" / "megc_log.txt").read_text().startswith("casme2 sub01\n")


def test_labels_csv_with_header_and_class_names(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("dataset,subject,clip,label\nsmic,s01,s01_po_01,positive\nsmic,s01,s01_sur_01,surprise\n")
    assert read_labels(path)["label_id"].tolist() == [1, 2]
    path.write_text("dataset,subject,clip,label\nsmic,s01,x,joy\n")
    with pytest.raises(ValueError, match="joy"):
        read_labels(path)


def test_several_datasets_need_a_choice(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "gt.csv").write_text("casme2,sub01,EP01,0\nsmic,s01,s01_ne_01,0\n")
    with pytest.raises(FileNotFoundError, match="no image"):
        load_samples(tmp_path / "images", labels=tmp_path / "gt.csv", dataset="casme2")
    for name in ("sub01_EP01.png", "s01_s01_ne_01.png"):
        cv2.imwrite(str(tmp_path / "images" / name), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="--dataset"):
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


def test_stage_reads_params_yaml(tmp_path, monkeypatch):
    index = _motion_index(tmp_path, subjects=("s1", "s2"), clips=3)
    params = {"scvit": SCVIT, "loso": LOSO, "prepare": {"protocol": "megc3"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # the stages/ scripts
    from stages.loso import main as stage_main

    assert stage_main(["--dataset", "toy", "--motions", str(index)]) == 0
    assert sorted(p.name for p in (tmp_path / "results" / "toy").glob("*.csv")) == ["s1.csv", "s2.csv"]
    assert json.loads((tmp_path / "results/toy/folds/s1.json").read_text())["n_train"] == 3


def test_pretrained_weights_file_keys_the_folds(tmp_path):
    import timm
    import torch

    samples = load_samples(_motion_index(tmp_path, subjects=("s1", "s2"), clips=3))
    weights = tmp_path / "vit_tiny.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict(), weights)
    pretrained = {"pretrained": True, "weights_file": str(weights), "embed_dim": None, "num_heads": None}
    out = tmp_path / "results"
    assert _run(samples, out, scvit=pretrained).ran == ("s1", "s2")
    assert _run(samples, out, scvit=pretrained).ran == ()
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict(), weights)  # new weights
    assert _run(samples, out, scvit=pretrained).ran == ("s1", "s2")
