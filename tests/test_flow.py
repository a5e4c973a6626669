"""Classical optical flow: TV-L1 (our port of OpenCV's DualTVL1), Farneback, DIS (selfme.flow)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from selfme.flow import CLASSICAL_METHODS, TVL1Params, classical_flow, flow_to_rgb, tvl1_flow
from selfme.flow.viz import motion_figure

FIXTURES = Path(__file__).parent / "data" / "tvl1_opencv.npz"
MARGIN = 16


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut, grey, area-resized to 128 x 128 (textured everywhere), float 0..255."""
    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.resize(gray, (128, 128), interpolation=cv2.INTER_AREA)


def shifted_pair(image: np.ndarray, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """I0 and I1 with I1(y) = I0(y - s), i.e. I0(x) = I1(x + s): the forward flow is (dx, dy) everywhere."""
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(image, matrix, image.shape[::-1], flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REFLECT_101)
    as_u8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731
    return as_u8(image), as_u8(moved)


def interior_epe(flow: np.ndarray, dx: float, dy: float) -> float:
    f = flow[MARGIN:-MARGIN, MARGIN:-MARGIN]
    return float(np.hypot(f[..., 0] - dx, f[..., 1] - dy).mean())


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
@pytest.mark.parametrize("shift", [(0.4, -0.3), (-0.7, 0.55)])
def test_baselines_recover_a_subpixel_translation(astronaut, method, shift):
    i0, i1 = shifted_pair(astronaut, *shift)
    flow = classical_flow(method, [i0], [i1])
    assert flow.shape == (1, 128, 128, 2) and flow.dtype == np.float32
    assert interior_epe(flow[0], *shift) < 0.1
    if method == "tvl1":
        assert interior_epe(flow[0], *shift) < 0.05


def test_flow_size_computes_at_a_lower_resolution_in_the_frames_pixels(astronaut):
    """A (1.2, -0.8) px translation of the 128-px image is (0.6, -0.4) px at 64 px; the flow comes back
    at 128 x 128 in 128-px pixels, so it is the shift again, and it is not the full-size flow."""
    i0, i1 = shifted_pair(astronaut, 1.2, -0.8)
    full = classical_flow("tvl1", [i0], [i1])
    half = classical_flow("tvl1", [i0], [i1], size=64)
    assert half.shape == (1, 128, 128, 2) and half.dtype == np.float32
    small = classical_flow("tvl1", [cv2.resize(i0, (64, 64), interpolation=cv2.INTER_AREA)],
                           [cv2.resize(i1, (64, 64), interpolation=cv2.INTER_AREA)])
    assert interior_epe(small[0], 0.6, -0.4) < 0.1  # what it computed: the 64-px flow, half the shift
    assert np.allclose(half[0], 2 * cv2.resize(small[0], (128, 128), interpolation=cv2.INTER_LINEAR), atol=1e-5)
    assert interior_epe(half[0], 1.2, -0.8) < 0.25  # about twice the 64-px error; full size is more accurate
    assert interior_epe(full[0], 1.2, -0.8) < interior_epe(half[0], 1.2, -0.8)


def test_tvl1_batch_equals_pairs_and_accepts_rgb(astronaut):
    a0, a1 = shifted_pair(astronaut[:64, :64].copy(), 0.3, 0.2)
    b0, b1 = shifted_pair(astronaut[64:, 64:].copy(), -0.5, 0.1)
    batch = tvl1_flow(np.stack([a0, b0]), np.stack([a1, b1]))
    single = tvl1_flow(b0, b1)
    assert batch.shape == (2, 64, 64, 2) and single.shape == (64, 64, 2)
    assert torch.allclose(batch[1], single)
    rgb = classical_flow("tvl1", [np.repeat(b0[:, :, None], 3, axis=2)], [np.repeat(b1[:, :, None], 3, axis=2)])
    assert np.allclose(rgb[0], single.numpy(), atol=1e-4)


def test_gpu_code_paths_agree_on_the_cpu(astronaut):
    """The batched loop (per-sample stopping) and the torch median are what a GPU runs."""
    from selfme.flow.tvl1 import _median, _median_unfold, _tvl1_batch

    u = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 20, 24)).astype(np.float32))
    assert torch.equal(_median(u, 5), _median_unfold(u, 5))
    a0, a1 = shifted_pair(astronaut[:48, :48].copy(), 0.3, 0.2)
    b0, b1 = shifted_pair(astronaut[80:, 80:].copy(), -0.5, 0.1)
    i0 = torch.from_numpy(np.stack([a0, b0])).float()
    i1 = torch.from_numpy(np.stack([a1, b1])).float()
    batched = _tvl1_batch(i0, i1, TVL1Params())
    for k in range(2):
        assert torch.allclose(batched[k], _tvl1_batch(i0[k:k + 1], i1[k:k + 1], TVL1Params())[0], atol=1e-4)


def test_tvl1_params():
    assert TVL1Params() == TVL1Params.from_mapping({})
    p = TVL1Params.from_mapping({"lambda": 0.3, "warps": 2})
    assert p.lambda_ == 0.3 and p.as_dict()["lambda"] == 0.3 and p.warps == 2
    with pytest.raises(ValueError, match="tvl1.iterations: unknown key"):
        TVL1Params.from_mapping({"iterations": 300})
    with pytest.raises(ValueError):
        TVL1Params.from_mapping({"scale_step": 1.0})
    with pytest.raises(ValueError):
        classical_flow("lucas_kanade", [np.zeros((8, 8), np.uint8)], [np.zeros((8, 8), np.uint8)])


@pytest.mark.skipif(not FIXTURES.is_file(), reason="tests/data/tvl1_opencv.npz is absent")
def test_tvl1_matches_opencv_dualtvl1():
    """Against cv2.optflow.DualTVL1OpticalFlow_create() flows stored by bench/compare_tvl1_opencv.py."""
    fixtures = np.load(FIXTURES)
    names = json.loads(str(fixtures["meta"]))["names"]
    assert len(names) >= 3
    for k, name in enumerate(names):
        ours = tvl1_flow(fixtures[f"i0_{k}"], fixtures[f"i1_{k}"]).numpy()
        ref = fixtures[f"opencv_{k}"].astype(np.float32)
        diff = np.linalg.norm(ours - ref, axis=-1)
        assert diff.mean() < 0.04, name  # measured: 0.016-0.021 px (OpenCV 5.0.0)
        assert diff[8:-8, 8:-8].mean() < 0.03, name  # measured: 0.012-0.016 px
        if f"truth_{k}" in fixtures:
            truth = fixtures[f"truth_{k}"].astype(np.float32)[8:-8, 8:-8]
            ours_err = np.linalg.norm(ours[8:-8, 8:-8] - truth, axis=-1).mean()
            ref_err = np.linalg.norm(ref[8:-8, 8:-8] - truth, axis=-1).mean()
            assert ours_err < ref_err + 0.01, name


def test_flow_colours():
    flow = np.zeros((4, 4, 2), np.float32)
    flow[..., 0] = 1.0  # +x: red
    rgb = flow_to_rgb(flow)
    assert rgb.dtype == np.uint8 and tuple(rgb[0, 0]) == (255, 0, 0)
    assert flow_to_rgb(np.zeros((4, 4, 2), np.float32)).max() == 0  # no motion: black
    fig = motion_figure([("frame", np.zeros((32, 32, 3), np.uint8)), ("flow", flow)], tile=48)
    assert fig.shape == (48 + 22, 3 * 48, 3)
