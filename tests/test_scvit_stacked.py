"""Stacked folds (loso.stack_folds): the masked losses equal the plain ones on the unpadded rows, and a
stacked LOSO run predicts what the plain per-fold run predicts on a tiny case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from loso_testing import random_samples
from selfme.scvit import SCViTConfig, symmetric_contrastive_loss
from selfme.scvit.stacked import masked_cross_entropy, masked_sc_loss, train_folds_stacked
from selfme.scvit.stacked_adam import StackedAdam
from selfme.scvit.train import LosoConfig, train_fold

TINY = dict(model_name="vit_tiny_patch16_224", img_size=8, patch_size=4, depth=1, embed_dim=8, num_heads=2,
            pretrained=False, head_hidden=8)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_masked_cross_entropy_is_cross_entropy_of_the_valid_rows(smoothing):
    torch.manual_seed(0)
    logits, labels = torch.randn(7, 3), torch.tensor([0, 1, 2, 2, 1, 0, 0])
    valid = torch.tensor([1, 1, 0, 1, 1, 0, 1], dtype=torch.bool)
    weight = torch.tensor([0.5, 2.0, 1.5])
    for w in (weight, None):
        expected = F.cross_entropy(logits[valid], labels[valid], weight=w, label_smoothing=smoothing)
        got = masked_cross_entropy(logits, labels, valid, torch.ones(3) if w is None else w, smoothing)
        assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("form", ["eq14", "supcon"])
@pytest.mark.parametrize("own_mirror", [True, False])
def test_masked_sc_loss_is_the_sc_loss_of_the_valid_rows(form, own_mirror):
    torch.manual_seed(1)
    regions, labels = torch.randn(6, 4, 5), torch.tensor([0, 0, 1, 1, 2, 0])
    valid = torch.tensor([1, 0, 1, 1, 1, 1], dtype=torch.bool)
    expected = symmetric_contrastive_loss(regions[valid], labels[valid], tau=0.1, form=form, own_mirror=own_mirror)
    got = masked_sc_loss(regions, labels, valid, tau=0.1, form=form, own_mirror=own_mirror)
    assert torch.allclose(got, expected, atol=1e-5)
    # no positives anywhere: zero, as the plain loss
    none = masked_sc_loss(regions[:3], torch.tensor([0, 1, 2]), torch.tensor([True, False, True]), tau=0.1,
                          form=form, own_mirror=False)
    assert float(none) == 0.0


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_stacked_adam_moves_each_active_fold_as_adam_and_leaves_the_others(weight_decay):
    torch.manual_seed(3)
    start = torch.randn(3, 4, 2)
    stacked = start.clone().requires_grad_()
    optimizer = StackedAdam([stacked], folds=3, lr=0.05, weight_decay=weight_decay)
    plain = [start[f].clone().requires_grad_() for f in range(3)]
    adams = [torch.optim.Adam([p], lr=0.05, weight_decay=weight_decay) for p in plain]
    active = [[1, 1, 1], [1, 0, 1], [0, 0, 1], [1, 1, 1], [1, 0, 0]]   # fold 0 sits out once, fold 1 three times
    for step, on in enumerate(active):
        grads = torch.randn(3, 4, 2)
        stacked.grad = grads * torch.tensor(on)[:, None, None]
        optimizer.step(torch.tensor(on, dtype=torch.bool))
        for f in range(3):
            if on[f]:
                plain[f].grad = grads[f].clone()
                adams[f].step()
        for f in range(3):
            assert torch.allclose(stacked[f], plain[f], atol=1e-6), (step, f)
    assert optimizer.steps.tolist() == [4, 2, 4]
    assert not torch.equal(stacked[2], start[2])


def test_stacked_training_matches_the_plain_per_fold_path():
    torch.manual_seed(0)
    x, y = torch.randn(13, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 0, 2])
    train = [torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8]), torch.arange(13),
             torch.tensor([0, 2, 4, 6, 8])]       # 9, 13, 5 rows: 3, 4 and 2 steps of batch 4 in one stack
    seeds = [11, 12, 13]
    model_config = SCViTConfig(**TINY, omega=0.1, sc_form="eq14", stem="conv", stem_channels=4)
    config = LosoConfig(epochs=3, batch_size=4, lr=1e-2, gamma_lr=0.9, hflip=0.5, shift_px=1,
                        label_smoothing=0.1, class_weight="balanced", stack_folds=3)
    device = torch.device("cpu")
    models, histories = train_folds_stacked(x, y, train, seeds, model_config=model_config, config=config,
                                            num_classes=3, device=device, negate=(0,))
    test = torch.randn(5, 3, 8, 8)
    for t, seed, model, history in zip(train, seeds, models, histories):
        plain, plain_history = train_fold(x[t], y[t], model_config=model_config, config=config, num_classes=3,
                                          seed=seed, device=device, negate=(0,))
        plain.eval(), model.eval()
        with torch.no_grad():
            assert torch.allclose(model(test), plain(test), atol=1e-4)
        for a, b in zip(history, plain_history):
            assert a["epoch"] == b["epoch"] and a["lr"] == pytest.approx(b["lr"])
            for k in ("loss", "ce", "sc", "train_acc"):
                assert a[k] == pytest.approx(b[k], abs=1e-4)


def test_stacked_loso_writes_the_plain_predictions(tmp_path):
    from selfme.scvit.loso import run_loso

    samples = random_samples(tmp_path)
    model_config = SCViTConfig(**TINY, channels=("dx", "dy"))
    base = dict(epochs=2, batch_size=4, lr=1e-2, hflip=0.5, seeds=(0,))
    plain = run_loso(samples, out=tmp_path / "plain", model_config=model_config, config=LosoConfig(**base),
                     num_classes=3, progress=False)
    stacked = run_loso(samples, out=tmp_path / "stacked", model_config=model_config,
                       config=LosoConfig(**base, stack_folds=4), num_classes=3, progress=False)
    for subject in ("s0", "s1", "s2", "s3"):
        a = pd.read_csv(tmp_path / "plain" / "casme2" / "seed_0" / f"{subject}.csv")
        b = pd.read_csv(tmp_path / "stacked" / "casme2" / "seed_0" / f"{subject}.csv")
        assert (a["pred_id"] == b["pred_id"]).all()
        assert np.allclose(a.filter(like="p_"), b.filter(like="p_"), atol=1e-4)
    assert plain.summary["casme2"]["uf1"] == stacked.summary["casme2"]["uf1"]


@pytest.mark.parametrize("peer", ["ststnet", "off_apexnet"])
def test_peers_train_stacked_as_they_train_alone(peer):
    torch.manual_seed(0)
    x, y = torch.randn(12, 3, 28, 28), torch.tensor([0, 1, 2] * 4)
    train = [torch.arange(0, 10), torch.arange(2, 12)]
    model_config = SCViTConfig(model_name=peer, img_size=28, pretrained=False, omega=0.1)
    config = LosoConfig(epochs=2, batch_size=4, lr=1e-3, stack_folds=2)
    models, _ = train_folds_stacked(x, y, train, [1, 2], model_config=model_config, config=config, num_classes=3,
                                    device=torch.device("cpu"))
    plain, _ = train_fold(x[train[1]], y[train[1]], model_config=model_config, config=config, num_classes=3, seed=2,
                          device=torch.device("cpu"))
    with torch.no_grad():
        assert torch.allclose(models[1](x), plain(x), atol=1e-5)
