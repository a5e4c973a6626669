"""The generator's image-level path (``motion.generator.image_skip``): the occlusion-weighted blend of the
warped source image and the decoded image, its invariants, and the flag through config, save and load.
Tiny networks, CPU."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfme.motion.checkpoint import params_hash
from selfme.motion.generator import OcclusionAwareGenerator
from selfme.motion.model import (PAPER_ARCHITECTURE, MotionLearner, load_motion_model, load_weights, model_config,
                                 same_architecture, save_motion_model)
from motion_testing import one_torch_thread, tiny_motion, torch_seed_0  # noqa: F401 (autouse fixtures)

TINY = tiny_motion()


def _with_skip(config: dict, flag: bool = True) -> dict:
    config = copy.deepcopy(config)
    config["generator"]["image_skip"] = flag
    return config


def _face(size: int = 32) -> torch.Tensor:
    from skimage import data

    face = cv2.resize(data.astronaut()[20:220, 150:350], (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(face).permute(2, 0, 1).float().div(255)[None]


def _generator(image_skip: bool, **kw) -> OcclusionAwareGenerator:
    return OcclusionAwareGenerator(num_kp=4, dense_motion_params=TINY["dense_motion"], image_skip=image_skip,
                                   **{**TINY["generator"], **kw})


def _force_visibility(gen: OcclusionAwareGenerator, logit: float) -> None:
    """Occlusion map sigmoid(logit) everywhere: 1 (all visible) for a large logit, 0 for a very negative one."""
    with torch.no_grad():
        gen.dense_motion_network.occlusion.weight.zero_()
        gen.dense_motion_network.occlusion.bias.fill_(logit)


def test_image_skip_with_full_visibility_reproduces_the_source_exactly():
    source = _face()
    kp = torch.rand(1, 4, 2) * 2 - 1
    skip, plain = _generator(True).eval(), _generator(False).eval()
    plain.load_state_dict(skip.state_dict())  # the flag adds no parameters
    _force_visibility(skip, 50.0)
    _force_visibility(plain, 50.0)
    with torch.no_grad():
        out = skip(source, kp_source=kp, kp_target=kp)  # the same keypoints: no motion (Eq. 2)
        fomm = plain(source, kp_source=kp, kp_target=kp)
    assert out["prediction"].shape == (1, 3, 32, 32) and out["decoded"].shape == (1, 3, 32, 32)
    assert torch.allclose(out["prediction"], source, atol=1e-5)
    # FOMM's generator, same weights and inputs, goes through the untrained decoder instead.
    assert (fomm["prediction"] - source).abs().mean() > 0.05
    assert torch.equal(fomm["prediction"], out["decoded"])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the blend stays float32 under AMP
        mixed = skip(source, kp_source=kp, kp_target=kp)
    assert mixed["decoded"].dtype == torch.bfloat16 and mixed["prediction"].dtype == torch.float32
    assert torch.allclose(mixed["prediction"], source, atol=1e-5)


def test_image_skip_copies_a_translated_source_at_full_resolution():
    """A uniform motion of (1, -2) px with full visibility: the output is the source shifted, pixel for pixel."""
    source = _face()
    gen = _generator(True).eval()
    _force_visibility(gen, 50.0)
    with torch.no_grad():  # psi: all weight on the keypoints (which move together), none on the background
        gen.dense_motion_network.mask.weight.zero_()
        gen.dense_motion_network.mask.bias.copy_(torch.tensor([-1e4, 0, 0, 0, 0]))
        kp_target = torch.rand(1, 4, 2) * 1.6 - 0.8
        out = gen(source, kp_source=kp_target + torch.tensor([2 / 31, -4 / 31]), kp_target=kp_target)
    # target(y, x) = source(y - 2, x + 1), wherever that lies inside the source
    assert torch.allclose(out["prediction"][..., 2:, :31], source[..., :30, 1:], atol=1e-4)
    assert torch.allclose(out["prediction"], out["deformed"], atol=1e-6)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_warp_padding_is_what_a_warp_samples_outside_the_source(padding):
    """The same (1, -2) px motion: inside the crop both paddings copy the source; the two top rows and the
    last column sample outside it, black with FOMM's zeros, the nearest edge pixel with border."""
    source = _face()
    gen = _generator(True, warp_padding=padding).eval()
    _force_visibility(gen, 50.0)
    with torch.no_grad():
        gen.dense_motion_network.mask.weight.zero_()
        gen.dense_motion_network.mask.bias.copy_(torch.tensor([-1e4, 0, 0, 0, 0]))
        kp_target = torch.rand(1, 4, 2) * 1.6 - 0.8
        out = gen(source, kp_source=kp_target + torch.tensor([2 / 31, -4 / 31]), kp_target=kp_target)
    deformed = out["deformed"]
    assert torch.allclose(deformed[..., 2:, :31], source[..., :30, 1:], atol=1e-4)
    if padding == "zeros":
        assert deformed[..., :2, :].abs().max() < 1e-4 and deformed[..., :, 31].abs().max() < 1e-4
    else:  # row y < 0 -> row 0, column 32 -> column 31
        assert torch.allclose(deformed[..., 0, :31], source[..., 0, 1:], atol=1e-4)
        assert torch.allclose(deformed[..., 1, :31], source[..., 0, 1:], atol=1e-4)
        assert torch.allclose(deformed[..., 2:, 31], source[..., :30, 31], atol=1e-4)


def test_warp_padding_reaches_the_dense_motion_networks_deformed_sources():
    """The dense motion network's K + 1 deformed sources (its hourglass's input) use the same padding: the
    same weights and motion, the top lattice row (which samples above the crop) darker with zeros."""
    source = _face()
    zeros, border = _generator(True).eval(), _generator(True, warp_padding="border").eval()
    border.load_state_dict(zeros.state_dict())
    kp_target = torch.rand(1, 4, 2) * 1.6 - 0.8
    kp_source = kp_target + torch.tensor([2 / 31, -4 / 31])
    with torch.no_grad():
        a, b = (g.dense_motion_network(source, kp_source=kp_source, kp_target=kp_target)["sparse_deformed"]
                for g in (zeros, border))
    assert torch.equal(a[:, 0], b[:, 0])  # the background's identity samples inside the crop only
    assert torch.allclose(a[:, 1:, :, 1:-1, :-1], b[:, 1:, :, 1:-1, :-1], atol=1e-5)
    assert (b[:, 1:, :, 0] - a[:, 1:, :, 0]).mean() > 0.1


def test_warp_padding_is_checked_and_defaults_to_fomms():
    assert _generator(True).warp_padding == "zeros"
    with pytest.raises(ValueError, match="warp_padding"):
        _generator(True, warp_padding="reflection")


def test_image_skip_with_no_visibility_is_fomms_decoder_output():
    source, kp_s, kp_t = _face(), torch.rand(2, 4, 2) * 2 - 1, torch.rand(2, 4, 2) * 2 - 1
    source = source.repeat(2, 1, 1, 1)
    skip, plain = _generator(True).eval(), _generator(False).eval()
    plain.load_state_dict(skip.state_dict())
    _force_visibility(skip, -50.0)
    _force_visibility(plain, -50.0)
    with torch.no_grad():
        a, b = skip(source, kp_source=kp_s, kp_target=kp_t), plain(source, kp_source=kp_s, kp_target=kp_t)
    assert torch.allclose(a["prediction"], b["prediction"], atol=1e-6)
    assert "decoded" not in b


def test_image_skip_is_the_occlusion_weighted_blend():
    source, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    gen = _generator(True).eval()
    with torch.no_grad():
        gen.dense_motion_network.occlusion.bias.fill_(0.3)
        out = gen(source, kp_source=torch.rand(2, 4, 2) * 2 - 1, kp_target=torch.rand(2, 4, 2) * 2 - 1)
    occ = out["occlusion_map"]
    assert occ.shape == (2, 1, 8, 8) and 0.05 < occ.min() and occ.max() < 0.95  # a real mixture
    visible = F.interpolate(occ, size=(32, 32), mode="bilinear", align_corners=True)
    expected = visible * out["deformed"] + (1 - visible) * out["decoded"]
    assert torch.allclose(out["prediction"], expected, atol=1e-6)
    assert out["prediction"].shape == target.shape
    assert 0 <= out["prediction"].min() and out["prediction"].max() <= 1


def test_image_skip_needs_the_occlusion_map():
    with pytest.raises(ValueError, match="estimate_occlusion_map"):
        _generator(True, estimate_occlusion_map=False)
    _generator(False, estimate_occlusion_map=False)


def test_image_skip_flag_in_config_hash_and_model_file(tmp_path):
    skip_config = _with_skip(TINY)
    assert model_config({**skip_config, "method": "selfme"}) == model_config(skip_config)
    assert model_config(skip_config)["generator"]["image_skip"] is True
    assert PAPER_ARCHITECTURE["generator"]["image_skip"] is False  # the paper profile: FOMM's generator
    assert params_hash({"motion": model_config(skip_config)}) != params_hash({"motion": model_config(TINY)})
    learner = MotionLearner(config=skip_config)
    assert learner.generator.image_skip
    save_motion_model(tmp_path / "skip.pt", learner)
    loaded = load_motion_model(tmp_path / "skip.pt")
    assert loaded.config == model_config(skip_config) and loaded.generator.image_skip
    source, target = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a = learner.eval()(source, target, with_losses=False)
        b = loaded(source, target, with_losses=False)
    assert torch.equal(a["prediction"], b["prediction"]) and "decoded" in b
    save_motion_model(tmp_path / "plain.pt", MotionLearner(config=TINY))  # no key: FOMM's generator
    assert not load_motion_model(tmp_path / "plain.pt").generator.image_skip


def test_initial_weights_must_match_the_flag(tmp_path):
    save_motion_model(tmp_path / "plain.pt", MotionLearner(config=TINY))
    assert same_architecture(TINY, _with_skip(TINY, False)) and not same_architecture(TINY, _with_skip(TINY))
    load_weights(MotionLearner(config=_with_skip(TINY, False)), tmp_path / "plain.pt")  # explicit false = omitted
    with pytest.raises(ValueError, match="motion architecture"):
        load_weights(MotionLearner(config=_with_skip(TINY)), tmp_path / "plain.pt")


def test_image_skip_learner_beats_the_identity_on_a_moved_pair():
    """Twenty steps on one pair whose target is the source moved by 1 px: the blend's output is closer to the
    target than the source is, by a margin (FOMM's generator, trained as briefly, is not)."""
    source = _face()
    target = torch.from_numpy(np.roll(source.numpy(), 1, axis=3).copy())
    target[..., 0] = source[..., 0]
    results = {}
    for flag in (False, True):
        torch.manual_seed(0)
        learner = MotionLearner(config=_with_skip(TINY, flag), losses={"scales": [1, 0.5], "equivariance": 0.0},
                                vgg={"pretrained": False})
        optimizer = torch.optim.Adam(learner.trainable_parameters(), lr=3e-3, betas=(0.5, 0.999))
        for _ in range(20):
            out = learner(source, target)
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
        learner.eval()
        with torch.no_grad():
            results[flag] = (learner(source, target, with_losses=False)["prediction"] - target).abs().mean().item()
    identity = (source - target).abs().mean().item()
    assert results[True] < 0.6 * identity and results[False] > identity
