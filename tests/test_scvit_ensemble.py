"""loso.ensemble: K models per run from their own seeds, predicting the mean of their softmax."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from loso_testing import random_samples
from selfme.scvit import SCViTConfig
from selfme.scvit.model import SoftmaxEnsemble
from selfme.scvit.stacked import ensemble_of
from selfme.scvit.train import LosoConfig, member_seed, predict, train_fold

TINY = dict(model_name="vit_tiny_patch16_224", img_size=8, patch_size=2, depth=1, embed_dim=8, num_heads=2,
            pretrained=False, head_hidden=0)


class Fixed(nn.Module):
    """Returns the same logits for every input row."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


def test_the_ensemble_predicts_the_mean_of_the_members_softmax():
    # member a: logits (0, 0, 0) -> softmax (1/3, 1/3, 1/3); member b: logits (log 6, log 3, 0) -> (6, 3, 1) / 10
    # mean: (1/3 + 0.6) / 2, (1/3 + 0.3) / 2, (1/3 + 0.1) / 2 = 0.46667, 0.31667, 0.21667
    ensemble = SoftmaxEnsemble(members=[Fixed([0.0, 0.0, 0.0]), Fixed([math.log(6), math.log(3), 0.0])])
    probs = predict(ensemble, torch.zeros(2, 1), device=torch.device("cpu"))
    assert np.allclose(probs, [[0.466667, 0.316667, 0.216667]] * 2, atol=1e-6)
    # the argmax of the mean can differ from every member's vote count: a (0.9, 0.1), b (0.45, 0.55), c (0.45, 0.55)
    votes = SoftmaxEnsemble(members=[Fixed([math.log(9), 0.0]), Fixed([0.0, math.log(0.55 / 0.45)]),
                                     Fixed([0.0, math.log(0.55 / 0.45)])])
    p = predict(votes, torch.zeros(1, 1), device=torch.device("cpu"))
    assert p[0] == pytest.approx([0.6, 0.4], abs=1e-6)
    with pytest.raises(ValueError):
        SoftmaxEnsemble(members=[])


def test_ensemble_of_one_member_is_that_member_and_of_several_averages_the_history():
    model = Fixed([0.0, 1.0])
    history = [{"epoch": 1, "lr": 0.1, "loss": 2.0, "ce": 1.0, "sc": 10.0, "train_acc": 0.5}]
    assert ensemble_of([(model, history)]) == (model, history)
    other = [{"epoch": 1, "lr": 0.1, "loss": 4.0, "ce": 3.0, "sc": 0.0, "train_acc": 1.0}]
    joined, mean = ensemble_of([(model, history), (Fixed([1.0, 0.0]), other)])
    assert isinstance(joined, SoftmaxEnsemble) and len(joined.members) == 2
    assert mean == [{"epoch": 1, "lr": 0.1, "loss": 3.0, "ce": 2.0, "sc": 5.0, "train_acc": 0.75}]


def test_ensemble_parameter_seeds_and_key():
    assert member_seed(7, 0, 1) == 7                            # an ensemble of one is the run itself
    assert [member_seed(s, k, 3) for s in (0, 1) for k in range(3)] == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="loso.ensemble"):
        LosoConfig(ensemble=0)
    assert "ensemble" not in LosoConfig().result_key()         # the default keeps finished folds' keys
    assert LosoConfig(ensemble=3).result_key()["ensemble"] == 3


@pytest.mark.parametrize("stack_folds", [1, 4])
def test_loso_ensemble_writes_the_mean_of_its_members(tmp_path, stack_folds):
    from selfme.scvit.folds import loso_folds, run_seed
    from selfme.scvit.loso import run_loso
    from selfme.scvit.sources import build_inputs

    samples = random_samples(tmp_path)
    frame = samples.frame
    model_config = SCViTConfig(**TINY, channels=("dx", "dy"))
    config = LosoConfig(epochs=2, batch_size=4, lr=1e-2, seeds=(0,), ensemble=2, stack_folds=stack_folds)
    run_loso(samples, out=tmp_path / "ens", model_config=model_config, config=config, num_classes=3, progress=False)
    x, _ = build_inputs(samples, model_config.input_config())
    y = torch.tensor(frame["label_id"].to_numpy())
    fold = next(f for f in loso_folds(frame["subject"], frame["dataset"]) if f.subject == "s2")
    probs = []
    for k in range(2):  # member k of base seed 0 is the single run of base seed k
        model, _ = train_fold(x[fold.train], y[fold.train], model_config=model_config, config=config, num_classes=3,
                              seed=run_seed(k, fold), device=torch.device("cpu"))
        probs.append(predict(model, x[fold.test], device=torch.device("cpu")))
    written = pd.read_csv(tmp_path / "ens" / "casme2" / "seed_0" / "s2.csv").filter(like="p_").to_numpy()
    assert np.allclose(written, (probs[0] + probs[1]) / 2, atol=1e-4)
    assert not np.allclose(probs[0], probs[1], atol=1e-3)       # the members differ: their seeds do
