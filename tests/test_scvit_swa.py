"""loso.swa_epochs: the fold's model is the mean of its weights after each of the last N epochs, in the
plain and the stacked trainer alike."""

from __future__ import annotations

import pytest
import torch

from selfme.scvit import SCViTConfig
from selfme.scvit.stacked import train_folds_stacked
from selfme.scvit.swa import WeightAverage, averages_epoch
from selfme.scvit.train import LosoConfig, train_fold

TINY = SCViTConfig(model_name="vit_tiny_patch16_224", img_size=8, patch_size=4, depth=1, embed_dim=8, num_heads=2,
                   pretrained=False, head_hidden=8, omega=0.1, stem="conv", stem_channels=4)
CPU = torch.device("cpu")


def test_running_mean_worked_out_by_hand():
    average = WeightAverage()
    for a in ([1.0, 2.0], [3.0, 4.0], [8.0, 0.0]):   # (1 + 3 + 8) / 3 = 4, (2 + 4 + 0) / 3 = 2
        average.update({"w": torch.tensor(a)})
    assert average.count == 3 and torch.allclose(average.mean()["w"], torch.tensor([4.0, 2.0]))
    with pytest.raises(ValueError):
        WeightAverage().mean()


def test_the_averaged_epochs_are_the_last_n():
    assert [averages_epoch(e, epochs=5, swa_epochs=2) for e in range(5)] == [False, False, False, True, True]
    assert not any(averages_epoch(e, epochs=5, swa_epochs=1) for e in range(5))   # 1: the last epoch, no average


def _data():
    torch.manual_seed(0)
    return torch.randn(10, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_plain_fold_predicts_with_the_mean_of_its_last_epochs_weights():
    x, y = _data()
    base = dict(batch_size=4, lr=1e-2, gamma_lr=0.9, hflip=0.5, shift_px=1)
    # the exponential schedule and the generators do not depend on the number of epochs, so a 2-epoch run
    # ends where epoch 2 of a 3-epoch run ends
    run = {e: _params(train_fold(x, y, model_config=TINY, config=LosoConfig(epochs=e, **base), num_classes=3,
                                 seed=5, device=CPU)[0]) for e in (2, 3)}
    swa, _ = train_fold(x, y, model_config=TINY, config=LosoConfig(epochs=3, swa_epochs=2, **base), num_classes=3,
                        seed=5, device=CPU)
    for name, value in _params(swa).items():
        assert torch.allclose(value, (run[2][name] + run[3][name]) / 2, atol=1e-6), name
    assert any(not torch.allclose(v, run[3][k]) for k, v in _params(swa).items())   # not the last epoch's


def test_stacked_folds_average_as_the_plain_fold():
    x, y = _data()
    config = LosoConfig(epochs=3, batch_size=4, lr=1e-2, gamma_lr=0.9, swa_epochs=2, stack_folds=2)
    train = [torch.arange(10), torch.arange(6)]
    models, _ = train_folds_stacked(x, y, train, [3, 4], model_config=TINY, config=config, num_classes=3, device=CPU)
    plain, _ = train_fold(x[train[1]], y[train[1]], model_config=TINY, config=config, num_classes=3, seed=4,
                          device=CPU)
    test = torch.randn(4, 3, 8, 8)
    models[1].eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(models[1](test), plain(test), atol=1e-4)


def test_no_averaging_keeps_earlier_fold_keys_and_bad_values_are_refused():
    assert "swa_epochs" not in LosoConfig(epochs=5).result_key()
    assert LosoConfig(epochs=5, swa_epochs=3).result_key()["swa_epochs"] == 3
    for bad in (-1, 6):
        with pytest.raises(ValueError):
            LosoConfig(epochs=5, swa_epochs=bad)
