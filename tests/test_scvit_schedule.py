"""loso.lr_schedule: the per-epoch learning rate of the exponential (paper) and cosine schedules, in the
plain and the stacked trainer, and the fold key that leaves earlier results' keys as they were."""

from __future__ import annotations

import math

import pytest
import torch

from selfme.scvit import SCViTConfig
from selfme.scvit.stacked import train_folds_stacked
from selfme.scvit.train import LosoConfig, cosine_factor, train_fold

TINY = SCViTConfig(model_name="vit_tiny_patch16_224", img_size=8, patch_size=4, depth=1, embed_dim=8, num_heads=2,
                   pretrained=False, head_hidden=0, omega=0.0)

# 5 epochs, 1 of warmup: epoch 0 at (0 + 1) / (1 + 1) of the lr; then cosine over the other 4 epochs,
# (1 + cos(pi * k / 4)) / 2 for k = 0..3: 1, (1 + 0.70711) / 2, 1/2, (1 - 0.70711) / 2
COSINE_5_WARMUP_1 = [0.5, 1.0, 0.853553, 0.5, 0.146447]


def test_cosine_factors_worked_out_by_hand():
    config = LosoConfig(epochs=5, lr_schedule="cosine", warmup_epochs=1)
    assert [cosine_factor(e, config) for e in range(5)] == pytest.approx(COSINE_5_WARMUP_1, abs=1e-6)
    no_warmup = LosoConfig(epochs=4, lr_schedule="cosine")
    assert [cosine_factor(e, no_warmup) for e in range(4)] == pytest.approx([1.0, 0.853553, 0.5, 0.146447], abs=1e-6)


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("schedule", ["exponential", "cosine"])
def test_both_trainers_follow_the_schedule(stacked, schedule):
    torch.manual_seed(0)
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    config = LosoConfig(epochs=5, batch_size=4, lr=0.01, gamma_lr=0.8, lr_schedule=schedule,
                        warmup_epochs=1 if schedule == "cosine" else 0,
                        stack_folds=2 if stacked else 1)
    if stacked:
        _, histories = train_folds_stacked(x, y, [torch.arange(6), torch.arange(4)], [0, 1], model_config=TINY,
                                           config=config, num_classes=3, device=torch.device("cpu"))
        history = histories[1]
    else:
        _, history = train_fold(x, y, model_config=TINY, config=config, num_classes=3, seed=0,
                                device=torch.device("cpu"))
    expected = COSINE_5_WARMUP_1 if schedule == "cosine" else [0.8 ** e for e in range(5)]
    assert [row["lr"] for row in history] == pytest.approx([0.01 * f for f in expected], rel=1e-5)


def test_the_default_schedule_keeps_earlier_fold_keys():
    plain = LosoConfig(epochs=5).result_key()
    assert "lr_schedule" not in plain and "warmup_epochs" not in plain
    cosine = LosoConfig(epochs=5, lr_schedule="cosine", warmup_epochs=2).result_key()
    assert (cosine["lr_schedule"], cosine["warmup_epochs"]) == ("cosine", 2)


@pytest.mark.parametrize("bad", [dict(warmup_epochs=5), dict(warmup_epochs=-1), dict(lr_schedule="linear"),
                                 dict(warmup_epochs=1)])  # the last: warmup under the exponential schedule
def test_bad_schedules_are_refused(bad):
    with pytest.raises(ValueError):
        LosoConfig(epochs=5, **bad)


def test_cosine_never_reaches_zero_in_a_trained_epoch():
    config = LosoConfig(epochs=40, lr_schedule="cosine", warmup_epochs=2)
    last = cosine_factor(39, config)
    assert last == pytest.approx(0.5 * (1 + math.cos(math.pi * 37 / 38))) and last > 0
