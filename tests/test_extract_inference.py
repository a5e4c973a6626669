"""The motion learner's inference form (selfme.extract.inference) and its frozen graphs (selfme.extract.frozen)
compute what the trained learner computes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfme.extract import ExtractConfig, MotionEngine
from selfme.extract.frozen import DenseDisplacement, MotionField, freeze_motion_field
from selfme.extract.inference import (FastConv2d, FoldedDownBlock2d, PhaseUpBlock2d, SeparableAntiAlias,
                                     inference_learner, nnpack_available, phase_kernels)
from selfme.motion.blocks import AntiAliasInterpolation2d, DownBlock2d, UpBlock2d
from selfme.motion.model import MotionLearner
from tests.motion_testing import one_torch_thread, tiny_motion, torch_seed_0  # noqa: F401 (fixtures)


def _randomise_norms(module: torch.nn.Module) -> None:
    """BN statistics and affine parameters away from the identity, so folding them is exercised."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def test_phase_kernels_by_hand():
    # A 3 x 3 kernel with one tap at (row 0, col 0) after nearest x2 upsampling: output (2i, 2j) reads
    # upsampled (2i - 1, 2j - 1) = low-res (i - 1, j - 1), output (2i + 1, 2j + 1) reads low-res (i, j).
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 0, 0] = 1.0
    kernels = phase_kernels(weight)[:, 0, 0]          # [4, 2, 2]
    assert kernels[0].tolist() == [[1, 0], [0, 0]]    # phase (0, 0): low-res (i - 1, j - 1)
    assert kernels[3].tolist() == [[1, 0], [0, 0]]    # phase (1, 1): low-res (i, j), its first tap
    ones = phase_kernels(torch.ones(1, 1, 3, 3))[:, 0, 0]
    assert ones.sum(dim=(1, 2)).tolist() == [9, 9, 9, 9]  # every tap lands on exactly one low-res pixel
    assert ones[0].tolist() == [[1, 2], [2, 4]] and ones[3].tolist() == [[4, 2], [2, 1]]


@pytest.mark.parametrize("size", [(2, 2), (3, 5), (8, 6)])  # both forward paths (tiny maps and one conv)
def test_phase_up_block_equals_the_up_block(size):
    block = UpBlock2d(6, 5).eval()
    _randomise_norms(block)
    x = torch.randn(3, 6, *size)
    with torch.no_grad():
        expected, got = block(x), PhaseUpBlock2d(block)(x)
    assert got.shape == expected.shape == (3, 5, 2 * size[0], 2 * size[1])
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale,size", [(0.25, (32, 32)), (0.25, (30, 21)), (0.5, (17, 16))])
def test_separable_anti_alias_equals_blur_then_subsample(scale, size):
    block = AntiAliasInterpolation2d(3, scale)
    x = torch.rand(2, 3, *size)
    expected, got = block(x), SeparableAntiAlias(block)(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6)


needs_nnpack = pytest.mark.skipif(not nnpack_available(), reason="torch without NNPACK")


@needs_nnpack
@pytest.mark.parametrize("size", [(16, 16), (20, 17), (6, 9)])  # NNPACK's path (>= 256 pixels) and F.conv2d's
def test_folded_down_block_equals_the_down_block(size):
    block = DownBlock2d(5, 7).eval()
    _randomise_norms(block)
    x = torch.randn(2, 5, *size)
    with torch.no_grad():
        expected, got = block(x), FoldedDownBlock2d(block)(x)
    assert got.shape == expected.shape == (2, 7, size[0] // 2, size[1] // 2)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


@needs_nnpack
@pytest.mark.parametrize("padding", [0, 3])
def test_fast_7x7_head_equals_the_convolution(padding):
    head = torch.nn.Conv2d(9, 4, kernel_size=7, padding=padding)
    x = torch.randn(3, 9, 19, 16)
    with torch.no_grad():
        expected, got = head(x), FastConv2d(head)(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


def _learner() -> MotionLearner:
    learner = MotionLearner(config=tiny_motion()).eval()
    _randomise_norms(learner)
    return learner


def test_inference_learner_gives_the_same_motion_and_leaves_the_model_alone(monkeypatch):
    import selfme.extract.inference as inference

    monkeypatch.setattr(inference, "NNPACK_MIN_CHANNELS_3X3", 1)  # the tiny learner's narrow 16 x 16 maps too
    learner = _learner()
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    fast = inference_learner(learner)
    kinds = {type(m).__name__ for m in fast.modules()}
    assert {"PhaseUpBlock2d", "SeparableAntiAlias"} <= kinds and "UpBlock2d" not in kinds
    if nnpack_available():
        assert {"FoldedDownBlock2d", "FastConv2d"} <= kinds  # the detector's 16 x 16 maps, the 7 x 7 heads
    assert fast.generator.dense_motion_network.occlusion is None  # extraction never reads it
    assert learner.generator.dense_motion_network.occlusion is not None
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())
    src, dst = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = learner.estimate_motion(src, dst, gamma=2.0)["displacement"]
        got = fast.estimate_motion(src, dst, gamma=2.0)["displacement"]
    assert torch.allclose(got, expected, atol=1e-5 * max(1.0, float(expected.abs().max())))


def test_a_block_whose_definition_changed_is_kept(monkeypatch, caplog):
    def bilinear_forward(self, x):  # not what the inference form assumes (nearest upsampling)
        up = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.relu(self.norm(self.conv(up)))

    monkeypatch.setattr(UpBlock2d, "forward", bilinear_forward)
    learner = _learner()
    with caplog.at_level(logging.WARNING):
        fast = inference_learner(learner)
    assert "PhaseUpBlock2d" not in {type(m).__name__ for m in fast.modules()}
    assert "kept as trained" in caplog.text
    src, dst = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fast.estimate_motion(src, dst)["displacement"],
                              learner.estimate_motion(src, dst)["displacement"], atol=1e-5)


@pytest.mark.parametrize("form", ["eager", "frozen"])
def test_engine_flows_match_the_trained_learner(form):
    learner = _learner()
    rng = np.random.default_rng(0)
    onsets = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    apexes = [np.roll(o, 1, axis=1) for o in onsets]
    config = ExtractConfig(batch_size=3, device="cpu")
    engine = MotionEngine(config, learner=learner, form=form)
    reference = MotionEngine(config, learner=learner, form="plain")  # the learner as trained, estimate_motion
    assert engine.field.frozen == (form == "frozen") and not reference.field.frozen
    got = engine.compute(onsets, apexes, with_gamma1=True)
    expected = reference.compute(onsets, apexes, with_gamma1=True)
    for key in ("flow", "flow_gamma1"):
        flows, truth = (np.stack([getattr(r, key) for r in rs]) for rs in (got, expected))
        assert np.abs(flows - truth).max() <= 1e-4 * max(1.0, np.abs(truth).max())
    assert engine.model_checksum == reference.model_checksum  # keyed by the trained weights


@pytest.mark.parametrize("jacobian", [False, True])
def test_motion_field_is_estimate_motion_with_keypoints_shared(jacobian):
    # Keypoints of source and target in one batch and reused across gammas: the same numbers as
    # estimate_motion, which detects them in two batches for every gamma.
    learner = MotionLearner(config=tiny_motion(kp_detector={"estimate_jacobian": jacobian})).eval()
    _randomise_norms(learner)
    field = MotionField(learner)
    src, dst = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        keypoints = field.keypoints(src, dst)
        assert len(keypoints) == (4 if jacobian else 2)
        for gamma in (1.0, 2.0):
            expected = learner.estimate_motion(src, dst, gamma=gamma)["displacement"]
            assert torch.allclose(field.displacement(src, dst, gamma, keypoints), expected, atol=1e-6)


@pytest.mark.parametrize("jacobian", [False, True])
def test_frozen_field_gives_the_eager_motion_at_other_batch_sizes_and_gammas(jacobian):
    learner = inference_learner(MotionLearner(config=tiny_motion(kp_detector={"estimate_jacobian": jacobian})).eval())
    _randomise_norms(learner)
    eager = MotionField(learner)
    frozen = freeze_motion_field(eager, image_size=32, device=torch.device("cpu"))
    assert frozen.frozen and isinstance(frozen.dense_part, torch.jit.ScriptModule)
    for pairs, gamma in ((1, 2.0), (5, 1.0), (3, 0.5)):
        src, dst = torch.rand(pairs, 3, 32, 32), torch.rand(pairs, 3, 32, 32)
        with torch.inference_mode():
            expected, got = eager.displacement(src, dst, gamma), frozen.displacement(src, dst, gamma)
        assert got.shape == expected.shape == (pairs, 2, 8, 8)
        assert torch.allclose(got, expected, atol=1e-5 * max(1.0, float(expected.abs().max())))
        assert float((expected[:, :, 1:] - expected[:, :, :-1]).abs().max()) > 1e-3  # not a trivial field


def test_a_frozen_graph_that_disagrees_or_fails_is_left_out(monkeypatch, caplog):
    import selfme.extract.frozen as frozen_module

    learner = _learner()
    field = MotionField(inference_learner(learner))
    real_freeze = frozen_module._freeze

    def off_by_a_hundredth(module, example):
        graph = real_freeze(module, example)
        return (lambda *args: graph(*args) + 0.01) if isinstance(module, DenseDisplacement) else graph

    monkeypatch.setattr(frozen_module, "_freeze", off_by_a_hundredth)
    with caplog.at_level(logging.WARNING):
        assert freeze_motion_field(field, image_size=32, device=torch.device("cpu")) is field
    assert "disagrees" in caplog.text and not field.frozen

    def fails(module, example):
        raise RuntimeError("untraceable")

    monkeypatch.setattr(frozen_module, "_freeze", fails)
    with caplog.at_level(logging.WARNING):
        assert freeze_motion_field(field, image_size=32, device=torch.device("cpu")) is field
    assert "untraceable" in caplog.text


def test_frozen_engines_are_reproducible():
    learner = _learner()
    frames = [np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    runs = [MotionEngine(ExtractConfig(device="cpu"), learner=learner).compute(frames, frames[::-1]) for _ in range(2)]
    assert all(np.array_equal(a.flow, b.flow) for a, b in zip(*runs))


def test_bf16_extraction_is_the_same_motion_in_lower_precision_and_keys_the_fields():
    learner = _learner()
    rng = np.random.default_rng(0)
    onsets = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    apexes = [np.roll(o, 1, axis=1) for o in onsets]
    fp32, bf16 = (MotionEngine(ExtractConfig(batch_size=3, device="cpu", amp=amp), learner=learner)
                  for amp in ("none", "bf16"))
    assert fp32.field.frozen and not bf16.field.frozen  # a float32 trace would ignore the autocast
    truth, got = (np.stack([r.flow for r in e.compute(onsets, apexes)]) for e in (fp32, bf16))
    assert got.dtype == np.float32
    scale = np.abs(truth).max()
    assert 0 < np.abs(got - truth).max() <= 0.1 * scale  # rounded (bf16 has 8 mantissa bits), not another motion
    assert "amp" not in ExtractConfig().method_params()  # fields stored before the key stay valid
    assert ExtractConfig(amp="bf16").method_params()["amp"] == "bf16"
    with pytest.raises(Exception, match="amp"):
        ExtractConfig.from_mapping({"amp": "fp16"})
