"""Instance refinement of the learned motion (selfme.extract.refine, ``extract.refine``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfme.bspline import bilinear_expand, bspline_expand
from selfme.config import ParamsError
from selfme.extract import ExtractConfig, MotionEngine
from selfme.extract.refine import RefineParams, diffusion, grey_frames, refine_velocity
from motion_testing import tiny_motion
from selfme.motion.model import MotionLearner

SIZE = 48


def blobs(shift_x: float = 0.0, shift_y: float = 0.0, size: int = SIZE) -> torch.Tensor:
    """A smooth test image [1, 1, S, S] in [0, 1], sampled analytically at (x - shift_x, y - shift_y): the
    image translated by (shift_x, shift_y), with no interpolation error."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    x, y = x - shift_x, y - shift_y
    image = 0.2 + 0.15 * torch.sin(x / 3.1) * torch.cos(y / 2.7) + 0.1 * torch.cos((x + y) / 4.3)
    image = image + 0.3 * torch.exp(-((x - 20) ** 2 + (y - 25) ** 2) / 30.0)
    return image.float()[None, None]


def test_diffusion_matches_hand_values():
    field = torch.zeros(1, 2, 2, 3)
    field[0, 0] = torch.tensor([[0.0, 1.0, 3.0], [0.0, 1.0, 3.0]])  # dx: differences 1, 2 in x, 0 in y
    # x: squares (1, 4) per row -> mean over the 2 x 2 x 2 x-differences (channel 1 all zero) = 10 / 8
    # y: all zero; the energy is half the x mean plus half the y mean = 0.625
    assert float(diffusion(field)[0]) == pytest.approx(0.625)


@pytest.mark.parametrize("expand, ss_steps", [(bspline_expand, 4), (bilinear_expand, 0)])
def test_refinement_recovers_a_translation_from_zero(expand, ss_steps):
    # target(p) = source(p + d) for the learner's backward motion d: target = source translated by -d
    d = (0.6, -0.4)
    source, target = blobs(), blobs(-d[0], -d[1])
    params = RefineParams(steps=150, lr=0.05, spacing=4, smooth=1.0, sigma=0.0)
    correction = refine_velocity(torch.zeros(1, 2, SIZE, SIZE), source, target, params, expand=expand,
                                 ss_steps=ss_steps)
    inner = correction[0, :, 8:-8, 8:-8]
    # exp of a constant velocity is the same translation, so the velocity itself is d
    assert float(inner[0].mean()) == pytest.approx(d[0], abs=0.01)
    assert float(inner[1].mean()) == pytest.approx(d[1], abs=0.01)
    error = (inner - torch.tensor(d).view(2, 1, 1)).abs()
    assert float(error.quantile(0.9)) < 0.07 and float(error.max()) < 0.15


def test_a_right_start_is_kept():
    d = (0.6, -0.4)
    source, target = blobs(), blobs(-d[0], -d[1])
    start = torch.tensor(d).view(1, 2, 1, 1).expand(1, 2, SIZE, SIZE).contiguous()
    params = RefineParams(steps=50, lr=0.02, spacing=4, smooth=1.0, sigma=0.0)
    correction = refine_velocity(start, source, target, params, expand=bspline_expand, ss_steps=4)
    # it moves only by the bilinear warp's own interpolation error, never towards another motion
    inner = correction[0, :, 8:-8, 8:-8]
    assert float(inner.mean(dim=(1, 2)).abs().max()) < 0.01
    assert float(inner.abs().mean()) < 0.04 and float(inner.abs().max()) < 0.12


def test_each_pair_is_refined_as_if_alone():
    a = (blobs(), blobs(-0.5, 0.2))
    b = (blobs(0.3, 0.1), blobs(-0.2, 0.7))
    params = RefineParams(steps=20, lr=0.05, spacing=8, smooth=0.05, sigma=0.0)
    run = lambda s, t: refine_velocity(torch.zeros(s.shape[0], 2, SIZE, SIZE), s, t, params,  # noqa: E731
                                       expand=bspline_expand, ss_steps=3)
    alone = run(*a)
    together = run(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]))
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=0)


def test_grey_frames_scale_and_smooth():
    rgb = np.zeros((9, 9, 3), np.uint8)
    rgb[4, 4] = 255
    sharp, smooth = grey_frames([rgb], 0.0), grey_frames([rgb], 1.0)
    assert sharp.shape == (1, 1, 9, 9) and float(sharp.max()) == pytest.approx(1.0)
    assert float(smooth.max()) < 0.2 and float(smooth.sum()) == pytest.approx(1.0, abs=0.01)
    grey = grey_frames([rgb[..., 0], rgb[..., :1]], 0.0)  # one-channel frames (SAMM's), with or without the axis
    torch.testing.assert_close(grey, sharp.expand(2, -1, -1, -1))


def test_config_keys_and_skip_key():
    off = ExtractConfig.from_mapping({})
    on = ExtractConfig.from_mapping({"refine": {"steps": 10}})
    assert "refine" not in off.method_params()  # stored fields from before the key stay valid
    assert on.method_params()["refine"]["steps"] == 10
    assert "refine" not in ExtractConfig.from_mapping({"refine": {"steps": 10}}, method="tvl1").method_params()
    with pytest.raises(ParamsError, match="extract.refine"):
        ExtractConfig.from_mapping({"refine": {"stpes": 10}})
    with pytest.raises(ValueError, match="refine"):
        ExtractConfig.from_mapping({"refine": {"steps": -1}})


def test_engine_refinement_lowers_the_pair_error():
    torch.manual_seed(0)
    learner = MotionLearner(config=tiny_motion()).eval()
    size = learner.config["image_size"] * 2
    onset = (blobs(size=size)[0, 0].numpy() * 255).astype(np.uint8)
    apex = (blobs(0.8, -0.5, size=size)[0, 0].numpy() * 255).astype(np.uint8)
    frames = [np.repeat(f[..., None], 3, axis=2) for f in (onset, apex)]
    flows = {}
    for steps in (0, 60):
        config = ExtractConfig.from_mapping({"gamma": 1.0, "refine": {"steps": steps, "sigma": 0.0}})
        engine = MotionEngine(config, learner=learner, form="plain")
        flows[steps] = engine.compute([frames[0]], [frames[1]])[0].flow
    # the stored field is the forward flow onset -> apex: onset(x) ~= apex(x + F); apex is onset moved by (0.8, -0.5)
    truth = np.array([0.8, -0.5], np.float32)
    error = {s: np.abs(f[8:-8, 8:-8] - truth).mean() for s, f in flows.items()}
    assert error[60] < 0.1 < error[0]


def test_a_variant_overrides_only_its_own_refine_keys():
    extract = {"refine": {"steps": 30, "smooth": 2.0}}
    zero = ExtractConfig.from_mapping(extract, refine={"init": "zero"})
    assert zero.refine_params == RefineParams(steps=30, smooth=2.0, init="zero")
    assert ExtractConfig.from_mapping(extract, refine={"steps": 0}).refine_params.steps == 0
    assert extract == {"refine": {"steps": 30, "smooth": 2.0}}  # the section itself is left as it was


def test_zero_init_ignores_the_learner():
    size = 2 * tiny_motion()["image_size"]
    onset = (blobs(size=size)[0, 0].numpy() * 255).astype(np.uint8)
    apex = (blobs(0.8, -0.5, size=size)[0, 0].numpy() * 255).astype(np.uint8)
    config = ExtractConfig.from_mapping({"gamma": 2.0, "refine": {"steps": 20, "init": "zero"}})
    flows = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        engine = MotionEngine(config, learner=MotionLearner(config=tiny_motion()).eval(), form="plain")
        flows.append(engine.compute([onset], [apex], with_gamma1=True)[0])
    np.testing.assert_array_equal(flows[0].flow, flows[1].flow)
    # gamma amplifies the correction: the stored field at gamma 2 is about twice the gamma-1 one
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(flows[0].flow[inner]).mean() == pytest.approx(2 * np.abs(flows[0].flow_gamma1[inner]).mean(), rel=0.05)
