"""An exponential moving average of the learner's weights (``pretrain.ema_decay`` / ``finetune.ema_decay``).

A departure from the paper (which keeps the last weights; ``ema_decay: 0``, the default): after every
Adam step the average theta_ema <- d * theta_ema + (1 - d) * theta is updated, over the keypoint
detector's and the generator's parameters and batch-norm statistics (``torch.optim.swa_utils``'s
``AveragedModel`` with its EMA rule; the first step copies theta). The stage's validation, sample images
and saved model then use the average. Why: a single training run of this small learner is noisy (the
seed, or the float summation order of another thread count, moves the held-out EPE by 0.05 px;
docs/motion_learning.md); an average over the last few hundred steps is a smoother point of the same
trajectory. Its state is part of the resumable checkpoint.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from selfme.motion.model import MotionLearner


def _networks(model: MotionLearner) -> nn.ModuleDict:
    """The trained part of the learner (no VGG), in the layout of ``networks_state_dict``."""
    return nn.ModuleDict({"kp_detector": model.kp_detector, "generator": model.generator})


class WeightAverage:
    """EMA of a learner's networks with decay ``decay`` in (0, 1) (``TrainConfig`` checks the range)."""

    def __init__(self, model: MotionLearner, *, decay: float) -> None:
        self.average = AveragedModel(_networks(model), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @torch.no_grad()
    def update(self, model: MotionLearner) -> None:
        """One EMA step after an optimiser step (the first call copies the weights)."""
        self.average.update_parameters(_networks(model))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.average.state_dict()

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.average.load_state_dict(state)

    @contextmanager
    def applied(self, model: MotionLearner) -> Iterator[MotionLearner]:
        """``model`` with the averaged weights inside the block, its own weights restored (exactly) after."""
        own = {name: {k: v.detach().clone() for k, v in sd.items()} for name, sd in model.networks_state_dict().items()}
        model.load_networks_state_dict({name: net.state_dict() for name, net in self.average.module.items()})
        try:
            yield model
        finally:
            model.load_networks_state_dict(own)
