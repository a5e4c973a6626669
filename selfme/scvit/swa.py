"""Weight averaging over the last epochs of the schedule (``loso.swa_epochs``; Izmailov et al., 2018,
"Averaging weights leads to wider optima and better generalization", without its cyclic learning rate).

The fold's model predicts with the mean of its parameters at the end of each of the last N epochs:
theta_swa = (1 / N) sum_{e = E - N + 1}^{E} theta_e. Every fold averages the same fixed epochs, whatever
its data, so nothing is selected (no epoch is looked at, on any subject). The plain and the stacked
trainer share this running mean, so both compute it the same way.
"""

from __future__ import annotations

from typing import Mapping

import torch


class WeightAverage:
    """A running mean of named tensors: after n updates, mean()[k] = the mean of the n tensors given for k."""

    def __init__(self) -> None:
        self.count = 0
        self._mean: dict[str, torch.Tensor] = {}

    def update(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Add one set of tensors: mean += (t - mean) / n (exact for n = 1: a copy)."""
        self.count += 1
        with torch.no_grad():
            for name, t in tensors.items():
                if self.count == 1:
                    self._mean[name] = t.detach().clone()
                else:
                    self._mean[name] += (t.detach() - self._mean[name]) / self.count

    def mean(self) -> dict[str, torch.Tensor]:
        if not self.count:
            raise ValueError("WeightAverage.mean() before any update")
        return dict(self._mean)


def averages_epoch(epoch: int, *, epochs: int, swa_epochs: int) -> bool:
    """Whether the weights after 0-based ``epoch`` enter the average (the last ``swa_epochs`` of ``epochs``;
    none when ``swa_epochs`` <= 1, where the model is the last epoch's as without averaging)."""
    return swa_epochs > 1 and epoch >= epochs - swa_epochs
