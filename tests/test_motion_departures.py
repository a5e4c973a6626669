"""The motion learner's documented departures: first-order (Jacobian) local motions, the pixel-space
pyramid loss and onset/apex pair sampling (docs/motion_learning.md)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from motion_testing import one_torch_thread, tiny_motion, torch_seed_0  # noqa: F401  (fixtures)
from selfme.motion.blocks import make_coordinate_grid
from selfme.motion.data import FrameFolder, FramePairDataset, me_clip_videos
from selfme.motion.dense_motion import DenseMotionNetwork
from selfme.motion.keypoint_detector import KPDetector
from selfme.motion.losses import PyramidL1Loss, equivariance_losses
from selfme.motion.model import MotionLearner, load_weights, save_motion_model
from selfme.motion.transform import ThinPlateSpline


def _dense(num_kp: int = 2) -> DenseMotionNetwork:
    return DenseMotionNetwork(num_kp=num_kp, block_expansion=4, max_features=16, num_blocks=2)


def test_first_order_local_motion_is_the_hand_built_affine_map():
    """FOMM's T_k(p) = z_s + J_s J_t^-1 (p - z_t), checked point by point against a hand-written affine map."""
    net = _dense(num_kp=1)
    z_s, z_t = torch.tensor([[[0.2, -0.1]]]), torch.tensor([[[0.0, 0.3]]])
    j_s = torch.tensor([[[[1.2, 0.1], [0.0, 0.8]]]])  # J_t = I: the local map is exactly J_s
    grids = net.create_sparse_motions((5, 7), z_s, z_t, 1.0, j_s, torch.eye(2).view(1, 1, 2, 2))
    p = make_coordinate_grid((5, 7))  # [5, 7, 2] (x, y)
    x, y = p[..., 0], p[..., 1]
    expected = torch.stack([0.2 + 1.2 * (x - 0.0) + 0.1 * (y - 0.3), -0.1 + 0.0 * x + 0.8 * (y - 0.3)], dim=-1)
    assert torch.allclose(grids[0, 1], expected, atol=1e-6)
    assert torch.equal(grids[0, 0], p)  # the background does not move


def test_first_order_motion_uses_source_times_inverse_target_and_gamma_scales_it():
    net = _dense(num_kp=1)
    z_s, z_t = torch.tensor([[[0.1, 0.0]]]), torch.tensor([[[-0.2, 0.1]]])
    j_s = torch.tensor([[[[1.0, 0.2], [0.0, 1.0]]]])
    j_t = torch.tensor([[[[2.0, 0.0], [0.0, 0.5]]]])
    j = np.array([[0.5, 0.4], [0.0, 2.0]])  # J_s J_t^-1 by hand: [[1/2, 0.2/0.5], [0, 1/0.5]]
    p = make_coordinate_grid((4, 4)).numpy()
    affine = np.array([0.1, 0.0]) + (p - np.array([-0.2, 0.1])) @ j.T  # T(p) at gamma 1
    one = net.create_sparse_motions((4, 4), z_s, z_t, 1.0, j_s, j_t)[0, 1].numpy()
    two = net.create_sparse_motions((4, 4), z_s, z_t, 2.0, j_s, j_t)[0, 1].numpy()
    np.testing.assert_allclose(one, affine, atol=1e-6)
    np.testing.assert_allclose(two, p + 2.0 * (affine - p), atol=1e-6)  # gamma scales T_k(p) - p


def test_identity_jacobians_give_the_zeroth_order_motion_eq2():
    net = _dense(num_kp=3)
    z_s, z_t = torch.rand(2, 3, 2) - 0.5, torch.rand(2, 3, 2) - 0.5
    eye = torch.eye(2).expand(2, 3, 2, 2)
    assert torch.allclose(net.create_sparse_motions((6, 6), z_s, z_t, 1.5, eye, eye),
                          net.create_sparse_motions((6, 6), z_s, z_t, 1.5), atol=1e-6)


def test_jacobian_head_starts_at_the_identity_and_checkpoints_keep_it(tmp_path):
    detector = KPDetector(num_kp=3, block_expansion=4, max_features=16, num_blocks=2, scale_factor=0.5, pad=3,
                          estimate_jacobian=True)
    kp, jac = detector.detect(torch.rand(2, 3, 32, 32))
    assert kp.shape == (2, 3, 2) and torch.allclose(jac, torch.eye(2).expand(2, 3, 2, 2), atol=1e-6)
    config = tiny_motion(kp_detector={"estimate_jacobian": True})
    model = MotionLearner(config=config)
    with torch.no_grad():
        model.kp_detector.jacobian.bias.add_(0.25)
    save_motion_model(tmp_path / "m.pt", model)
    fresh = MotionLearner(config=config)
    load_weights(fresh, tmp_path / "m.pt")
    assert torch.equal(fresh.kp_detector.jacobian.bias, model.kp_detector.jacobian.bias)
    assert MotionLearner(config=tiny_motion()).kp_detector.jacobian is None  # the paper's default


def test_tps_jacobian_matches_finite_differences():
    tps = ThinPlateSpline.random(2, sigma_affine=0.1, sigma_tps=0.05, generator=torch.Generator().manual_seed(3),
                                 dtype=torch.float64)
    points = torch.tensor([[[0.13, -0.41], [0.7, 0.2]], [[-0.33, 0.05], [0.0, 0.9]]], dtype=torch.float64)
    h = 1e-6
    columns = []
    for axis in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[axis] = h
        columns.append((tps.warp_coordinates(points + step) - tps.warp_coordinates(points - step)) / (2 * h))
    numeric = torch.stack(columns, dim=-1)  # [B, P, 2 (output), 2 (input)]
    assert torch.allclose(tps.jacobian(points), numeric, atol=1e-6)


def test_jacobian_equivariance_is_zero_for_the_identity_transform():
    detector = KPDetector(num_kp=3, block_expansion=4, max_features=16, num_blocks=2, scale_factor=0.5, pad=3,
                          estimate_jacobian=True)
    with torch.no_grad():
        detector.jacobian.weight.normal_(0, 0.05)  # non-trivial Jacobians
    frame = torch.rand(2, 3, 32, 32)
    kp, jac = detector.detect(frame)
    value, jac_term = equivariance_losses(detector, frame, kp, jac, ThinPlateSpline.identity(2))
    assert value.item() < 1e-5 and jac_term.item() < 1e-5
    value, jac_term = equivariance_losses(detector, frame, kp, jac, ThinPlateSpline.random(2, sigma_affine=0.2))
    assert jac_term.item() > 1e-3
    assert equivariance_losses(detector, frame, kp, None, ThinPlateSpline.identity(2))[1] is None


def test_pyramid_l1_hand_worked_values():
    target = torch.rand(1, 3, 16, 16)
    loss = PyramidL1Loss(scales=[1])
    assert loss(target + 0.1, target).item() == pytest.approx(0.1, abs=1e-6)
    assert PyramidL1Loss(scales=[1, 0.5])(target, target).item() == 0.0
    # At scale 0.5 the anti-aliased difference of a constant offset keeps 0.1 away from the borders.
    two = PyramidL1Loss(scales=[1, 0.5])(target + 0.1, target).item()
    assert 0.1 + 0.05 < two < 0.2 + 1e-6


def test_pixel_only_loss_builds_no_vgg_and_sums_eq8():
    model = MotionLearner(config=tiny_motion(), losses={"perceptual": 0, "pixel": 3.0, "equivariance": 2.0,
                                                        "scales": [1, 0.5]})
    assert model.perceptual is None and model.pixel is not None
    out = model(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), rng=torch.Generator().manual_seed(0))
    assert out["loss_perceptual"].item() == 0.0
    assert out["loss"].item() == pytest.approx(3.0 * out["loss_pixel"].item() + 2.0 * out["loss_equivariance"].item(),
                                               rel=1e-6)
    with pytest.raises(ValueError, match="both 0"):
        MotionLearner(config=tiny_motion(), losses={"perceptual": 0, "pixel": 0})


def test_warp_loss_is_the_pixel_pyramid_of_the_warped_source_and_trains_the_motion_only():
    """loss.warp: mean |D_s(source warped by the dense motion) - D_s(target)| over the scales, added to Eq. 8
    with its weight; its gradient reaches the keypoints and the dense motion but not the decoder."""
    torch.manual_seed(0)
    model = MotionLearner(config=tiny_motion(), losses={"perceptual": 0, "pixel": 3.0, "warp": 5.0,
                                                        "equivariance": 2.0, "scales": [1, 0.5]})
    source, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = model(source, target, rng=torch.Generator().manual_seed(0))
    pyramid = PyramidL1Loss(scales=[1, 0.5])
    assert out["loss_warp"].item() == pytest.approx(pyramid(out["deformed"], target).item(), rel=1e-6)
    assert out["loss_warp"].item() != pytest.approx(out["loss_pixel"].item(), rel=1e-3)  # not the reconstruction
    assert out["loss"].item() == pytest.approx(3.0 * out["loss_pixel"].item() + 5.0 * out["loss_warp"].item()
                                               + 2.0 * out["loss_equivariance"].item(), rel=1e-6)
    model.zero_grad()
    out["loss_warp"].backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    image_networks = [g for n, g in grads.items()  # the generator's encoder, bottleneck and decoder
                      if n.startswith("generator.") and not n.startswith("generator.dense_motion_network.")]
    assert image_networks and all(g is None or not g.any() for g in image_networks)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("kp_detector."))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "dense_motion_network." in n)
    off = MotionLearner(config=tiny_motion(), losses={"perceptual": 0, "pixel": 1.0, "scales": [1]})
    assert off(source, target, rng=torch.Generator().manual_seed(0))["loss_warp"].item() == 0.0


def _video(n: int = 24, onset: int | None = 0, apex: int | None = 8) -> FrameFolder:
    return FrameFolder([Path(f"img{i}.jpg") for i in range(n)], "v", onset_index=onset, apex_index=apex)


def test_onset_apex_sampler_pairs_onset_with_frames_near_apex():
    data = FramePairDataset([_video()], image_size=8, pairs_per_epoch=1, onset_apex=1.0, apex_window=2)
    rng = np.random.default_rng(0)
    pairs = [data.sample_pair(_video(), rng) for _ in range(200)]
    assert {s for s, _ in pairs} == {0} and {t for _, t in pairs} == {6, 7, 8, 9, 10}


def test_pair_sampler_mixes_at_the_given_rate_and_falls_back_to_uniform():
    data = FramePairDataset([_video()], image_size=8, pairs_per_epoch=1, onset_apex=0.5, apex_window=0)
    rng = np.random.default_rng(1)
    pairs = [data.sample_pair(_video(), rng) for _ in range(1000)]
    share = np.mean([p == (0, 8) for p in pairs])
    assert 0.45 < share < 0.56  # 0.5 + the uniform pairs that happen to be (0, 8): 1 / (24 * 23)
    uniform = [data.sample_pair(_video(onset=None, apex=None), rng) for _ in range(300)]
    assert all(s != t for s, t in uniform) and len(set(uniform)) > 200  # no apex known: two random frames
    with pytest.raises(ValueError):
        FramePairDataset([_video()], image_size=8, pairs_per_epoch=1, onset_apex=1.5)


def test_me_clip_videos_know_their_onset_and_apex(tmp_path):
    folder = tmp_path / "sub01" / "EP01"
    folder.mkdir(parents=True)
    for n in range(10, 20):
        cv2.imwrite(str(folder / f"img{n}.png"), np.zeros((4, 4, 3), np.uint8))
    manifest = pd.DataFrame([{"subject": "sub01", "clip": "EP01", "frames_dir": str(folder), "onset": 12,
                              "apex": 15, "offset": 18}])
    video = me_clip_videos(manifest)[0]
    assert len(video) == 7 and video.onset_index == 0 and video.apex_index == 3
    assert video.paths[video.apex_index].name == "img15.png"


def _faces(root: Path, dataset: str, n_clips: int) -> Path:
    """A crop folder with a manifest of ``n_clips`` one-frame clips (only what the manifest reader needs)."""
    from selfme.datasets import MANIFEST_COLUMNS

    folder = root / dataset
    rows = []
    for c in range(n_clips):
        clip_dir = folder / f"s{c % 3}" / f"EP{c:02d}"
        clip_dir.mkdir(parents=True)
        cv2.imwrite(str(clip_dir / "img1.png"), np.zeros((4, 4, 3), np.uint8))
        rows.append({"dataset": dataset, "subject": f"s{c % 3}", "clip": f"EP{c:02d}", "label": "positive",
                     "label_id": 1, "source_label": "happiness", "onset": 1, "apex": 1, "offset": 1,
                     "apex_source": "annotated", "frames_dir": str(clip_dir), "n_frames": 1, "fps": 200.0,
                     "color": "rgb"})
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(folder / "manifest.csv", index=False)
    return folder


def test_finetune_data_all_pools_every_dataset_of_the_run(tmp_path):
    from selfme.motion.holdout import load_face_manifests, resolve_face_data

    _faces(tmp_path, "casme2", 4), _faces(tmp_path, "smic_hs", 3)
    datasets = {"casme2": {"adapter": "casme2"}, "smic_hs": {"adapter": "smic_hs"}}
    folders = resolve_face_data("all", datasets, faces_dir=tmp_path)
    assert folders == [str(tmp_path / "casme2"), str(tmp_path / "smic_hs")]
    manifest, paths = load_face_manifests(folders)
    assert len(manifest) == 7 and sorted(set(manifest["dataset"])) == ["casme2", "smic_hs"] and len(paths) == 2
    assert resolve_face_data(str(tmp_path / "casme2")) == [str(tmp_path / "casme2")]
    with pytest.raises(KeyError, match="datasets"):
        resolve_face_data("all", {})


def test_held_out_clips_are_the_clips_neither_stage_trains_on(tmp_path):
    from selfme.motion.holdout import held_out_clips, load_face_manifests, split_holdout

    folder = str(_faces(tmp_path, "synthme", 10))
    finetune = {"data": folder, "holdout_clips": 3, "seed": 0}
    manifest, _ = load_face_manifests(folder)
    _, rows = split_holdout(manifest, 3, 0)
    expected = sorted(f"{r.subject}/{r.clip}" for r in rows.itertuples())
    voxceleb = {"source": "voxceleb", "data": "elsewhere"}
    assert held_out_clips(voxceleb, finetune) == expected  # pretraining on other videos: nothing to remove
    assert held_out_clips({"source": "synthme", "data": folder, "holdout_clips": 3, "seed": 0}, finetune) == expected
    assert held_out_clips({"source": "synthme", "data": folder}, finetune) == []  # pretraining saw every clip
    other_seed = held_out_clips({"source": "synthme", "data": folder, "holdout_clips": 3, "seed": 5}, finetune)
    seen = {f"{r.subject}/{r.clip}" for r in split_holdout(manifest, 3, 5)[0].itertuples()}
    assert other_seed == sorted(set(expected) - seen)
