"""Bad input to LOSO, as a new user would give it: each a one-line error naming the file, or a counted,
listed exclusion (issue: bad-input table)."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import yaml

from loso_testing import LOSO, SCVIT, motion_index, one_torch_thread, run  # noqa: F401
from selfme.scvit import (SCViTConfig, WeightsMismatch, WeightsNotFound, build_inputs, combine_samples,
                          create_scvit, load_samples)
from selfme.scvit import loso as loso_module
from selfme.scvit.screening import BadSampleFile

REPO = Path(__file__).resolve().parents[1]

PRETRAINED = dict(model_name="vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, pretrained=True)


def _pretrained(path) -> SCViTConfig:
    return SCViTConfig(**PRETRAINED, weights_file=str(path))


def _vit_tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()


def test_foreign_state_dict_is_refused_naming_the_file_and_the_missing_tensors(tmp_path):
    foreign = tmp_path / "resnet_head.pt"
    torch.save(torch.nn.Conv2d(3, 4, 3).state_dict(), foreign)  # another network: keys weight, bias
    with pytest.raises(WeightsMismatch) as err:
        create_scvit(_pretrained(foreign), num_classes=3, in_chans=3)
    message = str(err.value)
    # vit_tiny at depth 1: cls_token, pos_embed, patch_embed (2), one block (12), norm (2), head (2) = 20
    # tensors; all but the 2 of the classifier (which timm drops for 3 classes) must come from the file.
    assert str(foreign) in message and "18 of its 20 tensors" in message and "cls_token" in message
    assert "\n" not in message and isinstance(err.value, WeightsNotFound)  # the stages' handler catches it
    partial = _vit_tiny_state()
    del partial["blocks.0.attn.qkv.weight"]
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsMismatch, match=r"1 of its 20 tensors .*\(blocks\.0\.attn\.qkv\.weight\)"):
        create_scvit(_pretrained(tmp_path / "partial.pth"), num_classes=3, in_chans=3)


@pytest.mark.parametrize("kind, expected", [
    ("pickled list", "not a readable weights file"),
    ("not tensors", "holds no state dict of tensors"),
    ("truncated", "not a readable weights file"),
    ("other shapes", "not the weights of vit_tiny_patch16_224"),
    ("foreign npz", "not the weights of vit_tiny_patch16_224"),
])
def test_unloadable_weights_files_are_one_line_naming_the_file(kind, expected, tmp_path):
    path = tmp_path / ("weights.npz" if kind == "foreign npz" else "weights.pth")
    if kind == "pickled list":
        torch.save([torch.zeros(2)], path)
    elif kind == "not tensors":
        torch.save({"epoch": 3, "note": "a training log"}, path)
    elif kind == "truncated":
        torch.save(_vit_tiny_state(), path)
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "other shapes":  # a ViT of another width: the same keys, other shapes
        torch.save(timm.create_model("vit_tiny_patch16_224", embed_dim=64, num_heads=2).state_dict(), path)
    else:
        np.savez(path, kernel=np.zeros((3, 3), np.float32))
    with pytest.raises(WeightsMismatch) as err:
        create_scvit(_pretrained(path), num_classes=3, in_chans=3)
    assert str(path) in str(err.value) and expected in str(err.value) and "\n" not in str(err.value)


def test_loso_with_a_foreign_weights_file_trains_nothing(tmp_path):
    samples = load_samples(motion_index(tmp_path, subjects=("s1", "s2"), clips=3))
    foreign = tmp_path / "foreign.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), foreign)
    scvit = {"pretrained": True, "weights_file": str(foreign), "embed_dim": None, "num_heads": None}
    with pytest.raises(WeightsMismatch, match="foreign.pt"):
        run(samples, tmp_path / "out", scvit=scvit)
    assert not list((tmp_path / "out").rglob("*.csv"))


def _break(index, case: str) -> None:
    """Spoil sample s1/EP01 of a motion_index() source the way ``case`` says."""
    path = index.parent / "motion/s1/EP01.npy"
    if case == "nan":
        field = np.load(path)
        field[3, 4, 1] = np.nan
        np.save(path, field)
    elif case == "wrong shape":
        np.save(path, np.zeros((16, 16, 3), np.float16))
    elif case == "text":
        path.write_text("dx,dy\n0.1,0.2\n")
    else:  # an index row whose motion_path is empty
        frame = pd.read_csv(index)
        frame.loc[1, "motion_path"] = ""
        frame.to_csv(index, index=False)


@pytest.mark.parametrize("case, reason", [
    ("nan", "the displacement field has 1 NaN or infinite value(s)"),
    ("wrong shape", "expected a displacement field [H, W, 2], got shape (16, 16, 3)"),
    ("text", "not a .npy file (no NumPy header)"),
    ("empty motion_path", "empty motion_path in index.csv"),
])
def test_a_bad_motion_is_a_listed_exclusion_that_keys_the_folds(case, reason, tmp_path, caplog):
    index = motion_index(tmp_path, subjects=("s1", "s2"), clips=3)
    motion = index.parent / "motion/s1/EP01.npy"
    originals = {path: path.read_bytes() for path in (index, motion)}
    _break(index, case)
    samples = load_samples(index)
    assert len(samples) == 5 and samples.excluded[["subject", "clip"]].values.tolist() == [["s1", "EP01"]]
    named = "" if case == "empty motion_path" else str(index.parent / "motion/s1/EP01.npy")
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "1 sample(s) excluded: toy/s1/EP01" in warning and named in warning and reason in warning
    out = tmp_path / "out"
    result = run(samples, out)
    assert result.summary["toy"]["n_samples"] == 5 and len(result.excluded) == 1
    listed = pd.read_csv(out / "toy/excluded.csv", keep_default_na=False)
    assert listed.columns.tolist() == ["dataset", "subject", "clip", "path", "reason"]
    assert listed.values.tolist() == [["toy", "s1", "EP01", named, reason]]
    assert json.loads((out / "toy/scores.json").read_text())["n_excluded"] == 1
    assert pd.read_csv(out / "toy/seed_0/s1.csv")["clip"].tolist() == ["EP00", "EP02"]
    # The kept samples key the folds: with the sample repaired, both folds run again and the list goes.
    for path, content in originals.items():
        path.write_bytes(content)
    again = run(load_samples(index), out)
    assert sorted(again.ran) == [(0, "toy", "s1"), (0, "toy", "s2")] and not (out / "toy/excluded.csv").exists()
    assert json.loads((out / "toy/scores.json").read_text())["n_excluded"] == 0


def test_a_file_spoilt_after_loading_is_an_error_naming_it(tmp_path):
    index = motion_index(tmp_path, subjects=("s1", "s2"), clips=3)
    samples = load_samples(index)
    _break(index, "nan")
    with pytest.raises(BadSampleFile, match=r"motion/s1/EP01\.npy: the displacement field has 1 NaN"):
        build_inputs(samples, SCViTConfig(**SCVIT).input_config())


def _stage(tmp_path, monkeypatch, index, argv=()):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"scvit": SCVIT, "loso": LOSO,
                                                          "prepare": {"protocol": "megc3"}}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(REPO))  # the stages/ scripts
    from stages.loso import main as stage_main

    return stage_main(["--dataset", "toy", "--motions", str(index), *argv])


def test_one_subject_is_one_line_naming_the_fold(tmp_path, monkeypatch, capsys):
    samples = load_samples(motion_index(tmp_path, subjects=("s1",), clips=3))
    with pytest.raises(ValueError, match="LOSO fold toy/s1 has no training subject.*only subject s1"):
        run(samples, tmp_path / "out")
    composite = combine_samples([samples])  # one subject in the pooled datasets too
    with pytest.raises(ValueError, match="the pooled datasets hold only subject s1"):
        run(composite, tmp_path / "out", loso={"protocol": "composite"})
    assert _stage(tmp_path, monkeypatch, tmp_path / "index.csv") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("loso@toy: error: LOSO fold toy/s1 has no training subject")


class _InlinePool:
    """ProcessPoolExecutor's interface, run in this process: the workers' initialiser sees the inputs file."""
    seen: list[Path] = []

    def __init__(self, workers, *, mp_context, initializer, initargs):
        path = Path(initargs[1])
        assert path.is_file()
        self.seen.append(path)
        initializer(*initargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        future = Future()
        future.set_result(fn(*args))
        return future


def test_worker_inputs_stay_in_the_output_folder_and_are_cleaned_up(tmp_path, monkeypatch):
    samples = load_samples(motion_index(tmp_path, subjects=("s1", "s2"), clips=3))
    out = tmp_path / "out"
    stale = out / "toy/.work/inputs.pt"  # what a kill -9 during a run leaves behind
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half-written")
    monkeypatch.setattr(loso_module, "ProcessPoolExecutor", _InlinePool)
    _InlinePool.seen.clear()
    result = run(samples, out, loso={"workers": 2})
    assert sorted(result.ran) == [(0, "toy", "s1"), (0, "toy", "s2")]
    assert _InlinePool.seen == [out / "toy/.work/inputs.pt"]  # inside the dataset's output, not /tmp
    assert not (out / "toy/.work").exists()
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half-written")
    assert run(samples, out, loso={"workers": 2}).ran == () and not (out / "toy/.work").exists()


def test_results_hold_no_timings_and_repeat_byte_for_byte(tmp_path, monkeypatch):
    index = motion_index(tmp_path, subjects=("s1", "s2"), clips=3)
    _break(index, "wrong shape")  # the exclusion list is part of the results too
    samples = load_samples(index)
    first, second = run(samples, tmp_path / "a"), run(samples, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 7  # 2 fold CSVs, 2 records, MEGC log, scores.json, excluded.csv
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    record = json.loads((tmp_path / "a/toy/seed_0/folds/s1.json").read_text())
    assert not {"seconds", "device"} & set(record)
    assert [(t["base_seed"], t["subject"], t["device"]) for t in first.timings] == [(0, "s1", "cpu"), (0, "s2", "cpu")]
    assert all(t["seconds"] >= 0 for t in second.timings)
    assert _stage(tmp_path, monkeypatch, index) == 0  # the stage writes them beside, not into, the results
    timing = json.loads((tmp_path / "metrics/timing/loso_toy.json").read_text())
    assert timing["stage"] == "loso@toy" and timing["ran"] == 2 and len(timing["runs"]) == 2
    assert timing["loso"]["workers"] == 1 and timing["host"]["cpu_count"] >= 1
    assert not list((tmp_path / "results").rglob("*timing*"))
