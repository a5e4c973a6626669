"""Fast LOSO settings (selfme.scvit.fast): the same predictions as the plain path on a tiny CPU case,
the fold key, and the mapping of fold workers to GPUs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from loso_testing import LOSO, SCVIT, motion_index, one_torch_thread, run  # noqa: F401 (fixture)
from selfme.scvit import LosoConfig, SCViTConfig, load_samples
from selfme.scvit.fast import EpochSums
from selfme.scvit.folds import Fold, fold_key
from selfme.scvit.loso import worker_device
from selfme.scvit.train import predict, train_fold

CPU = torch.device("cpu")


def _data(n: int = 14, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-dependent 3-channel 32 x 32 inputs (a bright band per class) and labels 0..2."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    for i, label in enumerate(y.tolist()):
        x[i, 1, label * 10:label * 10 + 10] += 1.0
    return x, y


def _train(scvit: dict | None = None, **loso) -> tuple[list[dict], np.ndarray, dict]:
    """History, test probabilities (last 2 rows held out) and final weights of one tiny fold."""
    x, y = _data()
    model_config = SCViTConfig(**{**SCVIT, **(scvit or {})})
    config = LosoConfig(**{**LOSO, "epochs": 3, "batch_size": 4, "hflip": 0.5, "shift_px": 2, **loso})
    model, history = train_fold(x[:12], y[:12], model_config=model_config, config=config, num_classes=3, seed=7,
                                device=CPU, negate=(0,))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return history, predict(model, x[12:], device=CPU), state


@pytest.fixture(scope="module")
def plain():
    return {omega: _train({"omega": omega}) for omega in (0.0, 0.1)}


@pytest.mark.parametrize("omega", [0.0, 0.1])
def test_resident_inputs_are_the_plain_path_bit_for_bit(plain, omega):
    history, probs, state = _train({"omega": omega}, resident=True)
    assert history == plain[omega][0]
    assert np.array_equal(probs, plain[omega][1])
    assert all(torch.equal(state[k], v) for k, v in plain[omega][2].items())


def test_epoch_sync_keeps_the_history_and_weights_without_sc(plain):
    # Without SC, sync: epoch only moves the loss sums onto the device: the same float64 sums, read once.
    history, probs, state = _train({"omega": 0.0}, sync="epoch")
    assert history == plain[0.0][0]
    assert np.array_equal(probs, plain[0.0][1])
    assert all(torch.equal(state[k], v) for k, v in plain[0.0][2].items())


def test_epoch_sync_with_sc_differs_by_rounding_only(plain):
    # With SC, the masked mean over Eq. 14's terms sums in another order: float rounding, nothing more.
    history, probs, _ = _train({"omega": 0.1}, sync="epoch")
    for mine, theirs in zip(history, plain[0.1][0]):
        assert mine.keys() == theirs.keys() and mine["epoch"] == theirs["epoch"]
        assert mine["sc"] == pytest.approx(theirs["sc"], rel=1e-5) and mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
    assert np.abs(probs - plain[0.1][1]).max() < 1e-4


def test_channels_last_is_the_plain_path_up_to_float_rounding_on_cpu(plain):
    # oneDNN may pick another convolution kernel for the other layout (bit-identical on some CPUs, 3e-8
    # relative in the loss on an AMD EPYC); cuDNN on a GPU may too, so it keys the results all the same.
    history, probs, state = _train({"omega": 0.1}, channels_last=True)
    for mine, theirs in zip(history, plain[0.1][0], strict=True):
        assert mine.keys() == theirs.keys() and mine["epoch"] == theirs["epoch"]
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-6) and mine["sc"] == pytest.approx(theirs["sc"], rel=1e-6)
    assert np.abs(probs - plain[0.1][1]).max() < 1e-6
    assert all(torch.allclose(state[k].float(), v.float(), rtol=1e-4, atol=1e-4) for k, v in plain[0.1][2].items())


def test_bf16_autocast_is_close_to_fp32(plain):
    # bfloat16 keeps 8 bits of mantissa (relative rounding 4e-3); over 3 epochs of a tiny ViT the
    # training loss stays within 1 % and the held-out probabilities within 0.01 of the float32 run
    # (measured: 1.2e-3 and 1e-3).
    history, probs, _ = _train({"omega": 0.1}, amp="bf16", sync="epoch")
    assert history[-1]["loss"] == pytest.approx(plain[0.1][0][-1]["loss"], rel=0.01)
    assert np.abs(probs - plain[0.1][1]).max() < 0.01
    assert np.array_equal(probs.argmax(1), plain[0.1][1].argmax(1))


def test_compile_runs_the_training_forward_through_torch_compile(plain, monkeypatch):
    compiled = []
    real = torch.compile

    def eager_compile(model):  # dynamo traces the model; the eager backend keeps the numbers exact
        compiled.append(type(model).__name__)
        return real(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    torch._dynamo.reset()
    history, probs, _ = _train({"omega": 0.1}, compile=True)
    assert compiled == ["SCViT"]
    assert np.abs(probs - plain[0.1][1]).max() < 1e-5
    assert history[-1]["loss"] == pytest.approx(plain[0.1][0][-1]["loss"], rel=1e-6)


def test_epoch_sums_read_once_equal_per_step_reads():
    # Hand-made steps: 3 + 2 samples; lazy (device float64) and per-step Python floats agree exactly.
    steps = [(torch.tensor(0.7), torch.tensor(0.6), torch.tensor(1.0), torch.tensor([[1.0, 0.0]] * 3), torch.tensor([0, 1, 0])),
             (torch.tensor(0.3), torch.tensor(0.2), torch.tensor(1.0), torch.tensor([[0.0, 1.0]] * 2), torch.tensor([1, 1]))]
    eager, lazy = EpochSums(CPU, lazy=False), EpochSums(CPU, lazy=True)
    for step in steps:
        eager.add(*step)
        lazy.add(*step)
    expected = {"loss": (float(torch.tensor(0.7)) * 3 + float(torch.tensor(0.3)) * 2) / 5,
                "ce": (float(torch.tensor(0.6)) * 3 + float(torch.tensor(0.2)) * 2) / 5, "sc": 1.0, "train_acc": 4 / 5}
    assert eager.read(5) == lazy.read(5) == expected
    assert list(lazy.read(5)) == ["loss", "ce", "sc", "train_acc"]


def _key(**loso) -> str:
    fold = Fold("s1", np.array([1]), np.array([0]), "toy")
    return fold_key(SCViTConfig(**SCVIT), LosoConfig(**{**LOSO, **loso}), data_digest="d", fold=fold, seed=0,
                    num_classes=3)


def test_numeric_settings_key_the_results_execution_settings_do_not():
    plain = _key()
    assert _key(resident=True) == _key(workers=4, device="cpu") == plain
    keyed = {_key(amp="bf16"), _key(channels_last=True), _key(compile=True), _key(sync="epoch"), _key(threads=2)}
    assert len(keyed) == 5 and plain not in keyed  # the thread count orders float sums: it keys too
    # defaults are left out of the key, so folds finished before these settings existed stay valid
    assert not {"amp", "channels_last", "compile", "sync", "resident"} & set(LosoConfig(**LOSO).result_key())
    assert LosoConfig(**LOSO, amp="bf16").result_key()["amp"] == "bf16"


@pytest.mark.parametrize("bad,match", [({"amp": "fp16"}, "loso.amp"), ({"sync": "never"}, "loso.sync")])
def test_bad_fast_settings_name_the_key(bad, match):
    with pytest.raises(ValueError, match=match):
        LosoConfig(**{**LOSO, **bad})


def test_workers_share_gpus_round_robin():
    cuda = torch.device("cuda")
    assert [worker_device(k, cuda, 1) for k in range(4)] == [torch.device("cuda", 0)] * 4
    assert [worker_device(k, cuda, 2).index for k in range(5)] == [0, 1, 0, 1, 0]
    assert worker_device(3, torch.device("cuda", 1), 2) == torch.device("cuda", 1)
    assert worker_device(3, CPU, 0) == CPU


def test_run_loso_fast_settings_write_the_plain_fold_files(tmp_path):
    samples = load_samples(motion_index(tmp_path))
    scvit = {"omega": 0.0}
    run(samples, tmp_path / "plain", scvit=scvit)
    fast = run(samples, tmp_path / "fast", scvit=scvit, loso={"resident": True, "sync": "epoch", "workers": 1})
    assert fast.execution["resident"] is True
    for subject in ("s1", "s2", "s3"):
        name = f"toy/seed_0/{subject}.csv"
        assert (tmp_path / "fast" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    assert dataclasses.asdict(LosoConfig(**LOSO))["sync"] == "step"
