"""The dense motion network's residual flow (``motion.dense_motion.residual_flow``, a departure): it starts
at zero, adds a displacement scaled by gamma, depends on the target frame, trains through the warp
loss, and reaches extraction (the frozen TorchScript path included). Tiny networks, CPU."""

from __future__ import annotations

import pytest
import torch

from selfme.extract.frozen import MotionField, freeze_motion_field
from selfme.motion.dense_motion import DenseMotionNetwork
from selfme.motion.model import MotionLearner, model_config
from motion_testing import one_torch_thread, tiny_motion, torch_seed_0  # noqa: F401 (autouse fixtures)

DENSE = tiny_motion()["dense_motion"]


def _network(residual: bool) -> DenseMotionNetwork:
    return DenseMotionNetwork(num_kp=4, residual_flow=residual, **DENSE).eval()


def _pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    source, target = torch.rand(2, 1, 3, 32, 32)
    kp_s, kp_t = torch.rand(2, 1, 4, 2) * 1.6 - 0.8
    return source, target, kp_s, kp_t


def test_a_constant_residual_adds_gamma_times_its_pixels_to_eq5():
    source, target, kp_s, kp_t = _pair()
    net = _network(True)
    with torch.no_grad():
        base = net(source, kp_source=kp_s, kp_target=kp_t, gamma=2.0, target=target)["displacement"]
        base1 = net(source, kp_source=kp_s, kp_target=kp_t, gamma=1.0, target=target)["displacement"]
        # bias (atanh 0.5, atanh -0.2): residual 0.05 * (0.5, -0.2) = (0.025, -0.01) in normalised (x, y);
        # on a 32-px input 2 units span 31 px, so 0.025 is 0.3875 px and -0.01 is -0.155 px; gamma 2
        # doubles both
        net.residual.bias.copy_(torch.atanh(torch.tensor([0.5, -0.2])))
        moved = net(source, kp_source=kp_s, kp_target=kp_t, gamma=2.0, target=target)["displacement"]
    delta = moved - base
    assert torch.allclose(delta[:, 0], torch.full_like(delta[:, 0], 0.775), atol=1e-4)
    assert torch.allclose(delta[:, 1], torch.full_like(delta[:, 1], -0.31), atol=1e-4)
    with torch.no_grad():  # the bound: however large the head's output, at most 0.05 * 31 / 2 px per gamma
        net.residual.bias.fill_(50.0)
        capped = net(source, kp_source=kp_s, kp_target=kp_t, gamma=1.0, target=target)["displacement"]
    assert abs(float((capped - base1).abs().max()) - 0.05 * 31 / 2) < 1e-4


def test_the_residual_starts_at_zero_and_sees_the_target():
    source, target, kp_s, kp_t = _pair()
    net = _network(True)
    assert not net.residual.weight.any() and not net.residual.bias.any()
    with torch.no_grad():
        torch.nn.init.normal_(net.residual.weight, std=0.05)
        a = net(source, kp_source=kp_s, kp_target=kp_t, target=target)["displacement"]
        b = net(source, kp_source=kp_s, kp_target=kp_t, target=target.flip(-1))["displacement"]
    assert (a - b).abs().max() > 1e-3   # same keypoints, another target: another motion
    with pytest.raises(ValueError, match="residual_flow needs the target"):
        net(source, kp_source=kp_s, kp_target=kp_t)


def test_off_by_default_and_the_same_parameters_as_fomm():
    plain = _network(False)
    assert plain.residual is None and not plain.residual_flow
    widened = _network(True)
    extra = sum(p.numel() for p in widened.parameters()) - sum(p.numel() for p in plain.parameters())
    # the target's 3 channels widen the hourglass's first 3 x 3 convolution and, through its skip
    # connection, the 7 x 7 mask (K + 1 = 5 outputs) and occlusion (1) heads; the residual head is
    # a 7 x 7 convolution to 2 channels with a bias
    first = widened.hourglass.encoder.down_blocks[0].conv
    assert extra == 3 * first.out_channels * 9 + 3 * 5 * 49 + 3 * 1 * 49 + (2 * widened.hourglass.out_filters * 49 + 2)


def test_the_warp_loss_trains_the_residual_and_extraction_uses_it():
    config = model_config(tiny_motion(dense_motion={"residual_flow": True}))
    learner = MotionLearner(config=config, losses={"perceptual": 0.0, "pixel": 1.0, "warp": 10.0,
                                                   "equivariance": 0.0, "equivariance_jacobian": 0.0})
    source = torch.rand(2, 3, 32, 32)
    target = torch.roll(source, shifts=1, dims=3)
    out = learner(source, target)
    out["loss"].backward()
    head = learner.generator.dense_motion_network.residual
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    learner.eval()
    with torch.no_grad():
        torch.nn.init.normal_(head.weight, std=0.05)
        field = MotionField(learner)
        eager = field.displacement(source, target, 1.0)
        frozen = freeze_motion_field(field, image_size=32, device=torch.device("cpu"))
        assert frozen.frozen
        assert torch.allclose(frozen.displacement(source, target, 1.0), eager, atol=1e-5)
        other = field.displacement(source, torch.roll(source, shifts=-1, dims=3), 1.0)
    assert (other - eager).abs().max() > 1e-3
