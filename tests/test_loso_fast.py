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
