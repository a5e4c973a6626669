"""The tiny motion-learner configuration and the torch fixtures shared by the motion tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

_TINY = {
    "image_size": 32, "num_kp": 4, "num_channels": 3,
    "kp_detector": {"block_expansion": 4, "max_features": 16, "num_blocks": 2, "temperature": 0.1,
                    "scale_factor": 0.5, "pad": 3},
    "dense_motion": {"block_expansion": 4, "max_features": 16, "num_blocks": 2, "scale_factor": 0.25,
                     "kp_variance": 0.01},
    "generator": {"block_expansion": 4, "max_features": 16, "num_down_blocks": 2, "num_bottleneck_blocks": 1,
                  "estimate_occlusion_map": True},
}


def tiny_motion(**changes: Any) -> dict:
    """A fresh copy of the tiny learner config; a dict value updates that section, others replace the key."""
    config = copy.deepcopy(_TINY)
    for key, value in changes.items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from a second thread, and a busy shared CPU makes spinning threads crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def torch_seed_0():
    """Every test starts from torch seed 0."""
    torch.manual_seed(0)
