"""The motion learner's modules (selfme.motion): shapes, Eq. 1-8 properties, TPS, VGG loading. Tiny, CPU."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from selfme.motion.blocks import (AntiAliasInterpolation2d, DownBlock2d, Hourglass, ResBlock2d, SameBlock2d,
                                  UpBlock2d, kp2gaussian, make_coordinate_grid)
from selfme.motion.dense_motion import (DenseMotionNetwork, displacement_to_grid, displacement_to_opencv_flow,
                                        grid_to_displacement)
from selfme.motion.generator import OcclusionAwareGenerator
from selfme.motion.keypoint_detector import KPDetector
from selfme.motion.losses import VGG19_FILE, PerceptualLoss, Vgg19, _vgg19_features, equivariance_loss
from selfme.motion.model import PAPER_ARCHITECTURE, MotionLearner, load_weights, model_config
from selfme.motion.transform import ThinPlateSpline, tps_kernel
from motion_testing import one_torch_thread, tiny_motion, torch_seed_0  # noqa: F401 (autouse fixtures)

TINY = tiny_motion()
TINY_LOSS = {"scales": [1, 0.5]}
NO_VGG = {"pretrained": False}


def _image(size: int = 32, shift: int = 0) -> torch.Tensor:
    from skimage import data

    face = data.astronaut()[20:220, 150:350]  # the astronaut's face
    face = np.roll(face, shift, axis=1)
    face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(face).permute(2, 0, 1).float().div(255)[None]


def test_block_shapes():
    x = torch.rand(2, 3, 16, 16)
    assert DownBlock2d(3, 8)(x).shape == (2, 8, 8, 8)
    assert UpBlock2d(3, 8)(x).shape == (2, 8, 32, 32)
    assert SameBlock2d(3, 8)(x).shape == (2, 8, 16, 16)
    assert ResBlock2d(3)(x).shape == (2, 3, 16, 16)
    hourglass = Hourglass(block_expansion=4, in_features=3, num_blocks=2, max_features=16)
    assert hourglass(x).shape == (2, hourglass.out_filters, 16, 16) and hourglass.out_filters == 7
    assert AntiAliasInterpolation2d(3, 0.25)(x).shape == (2, 3, 4, 4)
    assert torch.equal(AntiAliasInterpolation2d(3, 1.0)(x), x)
    grid = make_coordinate_grid((5, 7))
    assert grid.shape == (5, 7, 2) and grid[0, 0].tolist() == [-1, -1] and grid[-1, -1].tolist() == [1, 1]
    heat = kp2gaussian(torch.zeros(2, 4, 2), (9, 9), 0.01)
    assert heat.shape == (2, 4, 9, 9) and heat[0, 0, 4, 4] == 1.0
    with pytest.raises(ValueError, match="divisible"):
        hourglass(torch.rand(1, 3, 18, 18))


def test_keypoints_are_heatmap_expectations_eq1():
    detector = KPDetector(num_kp=4, **TINY["kp_detector"])
    kp = detector(torch.rand(2, 3, 32, 32))
    assert kp.shape == (2, 4, 2) and kp.abs().max() <= 1
    heat = detector.heatmaps(torch.rand(2, 3, 32, 32))
    assert heat.shape == (2, 4, 16, 16)
    assert torch.allclose(heat.sum(dim=(2, 3)), torch.ones(2, 4), atol=1e-5)
    one_hot = torch.zeros(1, 1, 5, 5)
    one_hot[0, 0, 1, 3] = 1  # row 1 (y = -0.5), column 3 (x = 0.5)
    assert KPDetector.heatmap_to_keypoints(one_hot).tolist() == [[[0.5, -0.5]]]


def test_dense_motion_shapes_and_zero_motion_for_identical_frames_eq2():
    net = DenseMotionNetwork(num_kp=4, **TINY["dense_motion"])
    source, kp = torch.rand(2, 3, 32, 32), torch.rand(2, 4, 2) * 2 - 1
    out = net(source, kp_source=kp, kp_target=kp)
    assert out["mask"].shape == (2, 5, 8, 8) and out["occlusion_map"].shape == (2, 1, 8, 8)
    assert out["deformation"].shape == (2, 8, 8, 2) and out["displacement"].shape == (2, 2, 8, 8)
    assert out["sparse_deformed"].shape == (2, 5, 3, 8, 8)
    assert torch.allclose(out["mask"].sum(1), torch.ones(2, 8, 8), atol=1e-5)  # Eq. 4: psi sums to 1
    assert torch.equal(net.local_motions(kp, kp), torch.zeros_like(kp))  # Eq. 2
    assert out["displacement"].abs().max() < 1e-5  # no motion anywhere (Eq. 5)
    shifted = kp + torch.tensor([0.1, -0.2])
    assert torch.allclose(net.local_motions(shifted, kp, gamma=2.0), torch.tensor([0.2, -0.4]).expand(2, 4, 2))


def test_uniform_keypoint_shift_is_a_uniform_dense_motion_in_pixels():
    net = DenseMotionNetwork(num_kp=4, **TINY["dense_motion"])
    with torch.no_grad():  # psi: no weight on the background (it does not move), equal on the keypoints
        net.mask.weight.zero_()
        net.mask.bias.copy_(torch.tensor([-1e4, 0, 0, 0, 0]))
    kp_target = torch.rand(1, 4, 2) * 2 - 1
    step = torch.tensor([2 / 31, -4 / 31])  # 1 px right, 2 px up in a 32-px crop
    for gamma in (1.0, 2.0):
        disp = net(torch.rand(1, 3, 32, 32), kp_source=kp_target + step, kp_target=kp_target,
                   gamma=gamma)["displacement"]
        assert torch.allclose(disp[0, 0], torch.full((8, 8), gamma), atol=1e-4)
        assert torch.allclose(disp[0, 1], torch.full((8, 8), -2 * gamma), atol=1e-4)


def test_displacement_conventions_match_grid_sample_and_cv2_remap():
    disp = torch.randn(1, 2, 8, 8)
    grid = displacement_to_grid(disp, (32, 32))
    assert torch.allclose(grid_to_displacement(grid, (32, 32)), disp, atol=1e-5)
    source = torch.rand(1, 1, 32, 32)
    flow = displacement_to_opencv_flow(disp, size=(32, 32))[0]
    assert flow.shape == (32, 32, 2) and flow.dtype == np.float32
    full_grid = displacement_to_grid(torch.from_numpy(flow).permute(2, 0, 1)[None], (32, 32))
    warped = torch.nn.functional.grid_sample(source, full_grid, align_corners=True)[0, 0].numpy()
    ys, xs = np.mgrid[0:32, 0:32].astype(np.float32)
    remapped = cv2.remap(source[0, 0].numpy(), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = (xs + flow[..., 0] > 1) & (xs + flow[..., 0] < 30) & (ys + flow[..., 1] > 1) & (ys + flow[..., 1] < 30)
    assert np.abs(warped - remapped)[inside].max() < 1e-2


def test_generator_and_learner_shapes():
    gen = OcclusionAwareGenerator(num_kp=4, dense_motion_params=TINY["dense_motion"], **TINY["generator"])
    kp = torch.rand(2, 4, 2) * 2 - 1
    out = gen(torch.rand(2, 3, 32, 32), kp_source=kp, kp_target=kp)
    assert out["prediction"].shape == (2, 3, 32, 32) and out["deformed"].shape == (2, 3, 32, 32)
    assert 0 <= out["prediction"].min() and out["prediction"].max() <= 1
    learner = MotionLearner(config=TINY, losses=TINY_LOSS, vgg=NO_VGG)
    res = learner(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), rng=torch.Generator().manual_seed(0))
    for key in ("loss", "loss_perceptual", "loss_equivariance"):
        assert res[key].shape == () and res[key] > 0
    assert res["kp_source"].shape == (2, 4, 2) and res["displacement"].shape == (2, 2, 8, 8)
    motion = learner.estimate_motion(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), gamma=2.0)
    assert motion["displacement"].shape == (2, 2, 8, 8) and "prediction" not in motion


def test_perceptual_loss_shapes_and_pyramid_limits():
    vgg = Vgg19(pretrained=False)
    feats = vgg(torch.rand(1, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4),
                                                   (512, 2, 2)]
    assert not any(p.requires_grad for p in vgg.parameters())
    loss = PerceptualLoss(scales=[1, 0.5], vgg_pretrained=False)
    x = torch.rand(2, 3, 32, 32)
    assert loss(x, x).item() == 0.0 and loss(x, torch.rand(2, 3, 32, 32)).item() > 0
    with pytest.raises(ValueError, match="relu5_1 needs at least 16"):
        MotionLearner(config=TINY, losses={"scales": [1, 0.25]}, vgg=NO_VGG)


def test_missing_vgg_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(FileNotFoundError) as err:
        MotionLearner(config=TINY, losses=TINY_LOSS, vgg={"pretrained": True})
    message = str(err.value)
    assert VGG19_FILE in message and str(tmp_path / "torch_home" / "hub" / "checkpoints") in message
    assert "pretrained: false" in message
    with pytest.raises(FileNotFoundError, match="elsewhere.pth"):
        Vgg19(pretrained=True, weights=tmp_path / "elsewhere.pth")


def test_vgg_weights_load_from_a_torchvision_style_file(tmp_path, monkeypatch):
    features = _vgg19_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / VGG19_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    vgg = Vgg19(pretrained=True)
    assert torch.equal(vgg.slices[0][0].weight, features[0].weight)
    assert torch.equal(vgg.slices[4][-2].weight, features[28].weight)


def test_tps_identity_affine_and_fit():
    pts = torch.rand(3, 50, 2) * 2 - 1
    identity = ThinPlateSpline.identity(3)
    assert torch.equal(identity.warp_coordinates(pts), pts)
    theta = torch.tensor([[[1.1, 0.2, 0.05], [-0.1, 0.9, -0.02]]]).repeat(3, 1, 1)
    affine = ThinPlateSpline(theta, identity.control_points, torch.zeros(3, 25, 2))
    expected = pts @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)
    assert torch.allclose(affine.warp_coordinates(pts), expected, atol=1e-6)
    control = make_coordinate_grid((4, 4)).view(1, 16, 2)
    moved = control @ theta[:1, :, :2].transpose(1, 2) + theta[:1, :, 2].unsqueeze(1)
    fitted = ThinPlateSpline.fit(control, moved)
    assert fitted.weights.abs().max() < 1e-5 and torch.allclose(fitted.theta, theta[:1], atol=1e-5)
    assert torch.allclose(fitted.warp_coordinates(pts[:1]), expected[:1], atol=1e-5)
    bent = moved + 0.05 * torch.randn_like(moved)  # a non-affine target is interpolated exactly
    assert torch.allclose(ThinPlateSpline.fit(control, bent).warp_coordinates(control), bent, atol=1e-5)


def test_tps_kernel_is_r2_log_r2_and_safe_at_zero():
    r2 = torch.tensor([0.0, 0.25, 1.0, 4.0], requires_grad=True)
    values = tps_kernel(r2)
    assert torch.allclose(values, torch.tensor([0.0, 0.25 * np.log(0.25), 0.0, 4 * np.log(4.0)], dtype=torch.float32))
    values.sum().backward()
    assert torch.isfinite(r2.grad).all()
    p = torch.zeros(1, 1, 2, requires_grad=True)  # exactly on a control point
    tps = ThinPlateSpline.random(1, sigma_tps=0.1, generator=torch.Generator().manual_seed(0))
    tps.warp_coordinates(p).sum().backward()
    assert torch.isfinite(p.grad).all()


def test_equivariance_loss_is_zero_for_identity_and_positive_otherwise_eq7():
    detector = KPDetector(num_kp=4, **TINY["kp_detector"]).eval()
    frame = _image()
    kp = detector(frame)
    assert equivariance_loss(detector, frame, kp, ThinPlateSpline.identity(1)).item() < 1e-5
    tps = ThinPlateSpline.random(1, sigma_affine=0.1, sigma_tps=0.01, generator=torch.Generator().manual_seed(1))
    assert equivariance_loss(detector, frame, kp, tps).item() > 1e-3


def test_model_config_validation_and_paper_architecture():
    filled = model_config(TINY)  # the optional keys filled with their defaults
    assert filled == {**TINY, "kp_detector": {**TINY["kp_detector"], "estimate_jacobian": False},
                      "dense_motion": {**TINY["dense_motion"], "residual_flow": False},
                      "generator": {**TINY["generator"], "image_skip": False, "warp_padding": "zeros"}}
    assert model_config({**TINY, "method": "selfme"}) == filled
    with pytest.raises(ValueError, match="motion.num_keypoints: unknown key"):
        model_config({**TINY, "num_keypoints": 3})
    with pytest.raises(ValueError, match="divisible"):
        model_config({**TINY, "image_size": 36})
    model_config(PAPER_ARCHITECTURE)


def test_fomm_style_checkpoint_loads_without_its_jacobian_head(tmp_path):
    source = MotionLearner(config=TINY)
    state = source.networks_state_dict()
    state["kp_detector"]["jacobian.weight"] = torch.zeros(16, 7, 7, 7)
    torch.save({**state, "discriminator": {}, "epoch": 99}, tmp_path / "vox-cpk.pth.tar")
    target = MotionLearner(config=TINY)
    load_weights(target, tmp_path / "vox-cpk.pth.tar")
    for a, b in zip(source.trainable_parameters(), target.trainable_parameters()):
        assert torch.equal(a, b)


def test_overfit_identical_pair_reconstructs_input_and_loss_halves():
    learner = MotionLearner(config=TINY, losses={**TINY_LOSS, "equivariance": 0.0}, vgg=NO_VGG)
    frame = _image()
    optimizer = torch.optim.Adam(learner.trainable_parameters(), lr=3e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(100):
        out = learner(frame, frame)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.5 * losses[0]
    learner.eval()
    with torch.no_grad():
        out = learner(frame, frame, with_losses=False)
    assert out["displacement"].abs().max() < 1e-4  # identical frames: no motion (Eq. 2)
    assert (out["prediction"] - frame).abs().mean() < 0.06

