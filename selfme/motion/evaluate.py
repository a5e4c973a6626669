"""Checks of a motion learner on frame pairs: reconstruction and warping error against the identity."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from selfme.motion.model import MotionLearner


@torch.no_grad()
def evaluate_reconstruction(model: MotionLearner, dataset: Dataset, *, device: torch.device | str = "cpu",
                            batch_size: int = 8, gamma: float = 1.0) -> dict[str, float]:
    """Mean L1 vs the target of: the reconstruction, the source warped by the dense motion (the motion's
    own quality, free of the generator's blur) and the source itself (the identity baseline); eval mode.

    -> {'l1_reconstruction', 'l1_warped', 'l1_identity', 'n'}
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums = {"l1_reconstruction": 0.0, "l1_warped": 0.0, "l1_identity": 0.0}
    n = 0
    for source, target in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        source, target = source.to(device), target.to(device)
        out = model(source, target, gamma=gamma, with_losses=False)
        sums["l1_reconstruction"] += (out["prediction"].float() - target).abs().mean(dim=(1, 2, 3)).sum().item()
        sums["l1_warped"] += (out["deformed"].float() - target).abs().mean(dim=(1, 2, 3)).sum().item()
        sums["l1_identity"] += (source - target).abs().mean(dim=(1, 2, 3)).sum().item()
        n += source.shape[0]
    model.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()} | {"n": n}


@torch.no_grad()
def sample_image(model: MotionLearner, source: torch.Tensor, target: torch.Tensor, *,
                 device: torch.device | str = "cpu") -> np.ndarray:
    """The panel source / target / reconstruction / motion for one pair [3, H, W] x 2, eval mode."""
    from selfme.motion.viz import sample_panel

    was_training = model.training
    model.eval()
    out = model(source[None].to(device), target[None].to(device), with_losses=False)
    model.train(was_training)
    return sample_panel(source, target, out)
