"""Alignment geometry with known landmarks: pure functions, no detector."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from selfme.face.align import (AlignTarget, align_eyes, eye_line_angle, invert_affine, similarity_from_eyes,
                               similarity_params, transform_points, warp, warp_displacement)
from selfme.face.config import CropConfig
from selfme.face.landmarks import eye_centres
from face_testing import landmarks_with_eyes, texture


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx],
                     [scale * math.sin(a), scale * math.cos(a), ty]])


def test_eye_positions_are_fractions_of_the_size():
    target = AlignTarget(size=100, eye_distance=0.4, eye_y=0.4)
    np.testing.assert_allclose(target.eye_positions(), [[29.5, 39.5], [69.5, 39.5]])
    centre = target.eye_positions().mean(axis=0)
    assert centre[0] == pytest.approx((100 - 1) / 2)  # symmetric about the crop's centre line


@pytest.mark.parametrize("scale,angle,tx,ty", [(0.7, 23.0, 12.0, -5.0), (2.5, -140.0, 300.0, 41.5),
                                               (1.0, 0.0, 0.0, 0.0)])
def test_similarity_recovered_from_two_points(scale, angle, tx, ty):
    truth = similarity(scale, angle, tx, ty)
    src = np.array([[120.3, 88.1], [171.9, 95.4]])
    dst = transform_points(truth, src)
    recovered = similarity_from_eyes(src, dst)
    np.testing.assert_allclose(recovered, truth, atol=1e-9)
    s, a, t = similarity_params(recovered)
    assert s == pytest.approx(scale)
    assert a == pytest.approx(angle)
    np.testing.assert_allclose(t, [tx, ty], atol=1e-9)
    np.testing.assert_allclose(transform_points(invert_affine(recovered), dst), src, atol=1e-9)


def test_eyes_land_exactly_on_the_configured_positions():
    rng = np.random.default_rng(3)
    target = AlignTarget(size=256, eye_distance=0.38, eye_y=0.36)
    for _ in range(20):
        left = rng.uniform(50, 400, size=2)
        right = left + rng.uniform(30, 120) * np.array([math.cos(t := rng.uniform(-0.6, 0.6)), math.sin(t)])
        eyes = eye_centres(landmarks_with_eyes(left, right))
        np.testing.assert_allclose(eyes, [left, right], atol=1e-12)
        mapped = transform_points(align_eyes(eyes, target), eyes)
        np.testing.assert_allclose(mapped, target.eye_positions(), atol=1e-9)
        assert abs(eye_line_angle(mapped)) < 1e-9
        assert mapped[1, 0] - mapped[0, 0] == pytest.approx(0.38 * 256)


def test_coincident_eyes_are_an_error():
    with pytest.raises(ValueError, match="coincide"):
        similarity_from_eyes([[5, 5], [5, 5]], [[0, 0], [10, 0]])


@pytest.mark.parametrize("scale", [1.3, 0.8, 0.3])  # 0.3 goes through the area-averaging pre-shrink
def test_warp_puts_a_source_point_where_the_matrix_says(scale):
    image = np.zeros((600, 500), np.uint8)
    src = np.array([231.0, 318.0])
    cv2.circle(image, (231, 318), 12, 255, -1)
    matrix = similarity(scale, 17.0, 0.0, 0.0)
    matrix[:, 2] = np.array([64.0, 60.0]) - matrix[:, :2] @ src  # the dot should land at (64, 60)
    crop = warp(image, matrix, 128).astype(np.float64)
    ys, xs = np.mgrid[:128, :128]
    centroid = np.array([(crop * xs).sum(), (crop * ys).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, [64.0, 60.0], atol=0.25)


def test_constant_translation_becomes_the_rotated_scaled_translation():
    field = np.zeros((90, 120, 2), np.float32)
    field[..., 0], field[..., 1] = 3.0, -2.0
    matrix = similarity(0.5, 30.0, 10.0, 4.0)
    out = warp_displacement(field, matrix, 64)
    assert out.shape == (64, 64, 2) and out.dtype == np.float32
    expected = matrix[:, :2] @ np.array([3.0, -2.0])
    np.testing.assert_allclose(out.reshape(-1, 2), np.broadcast_to(expected, (64 * 64, 2)), atol=1e-5)


def test_linear_field_maps_as_a_times_f_of_t_inverse():
    h, w = 200, 240
    ys, xs = np.mgrid[:h, :w].astype(np.float64)
    b = np.array([[0.01, -0.02], [0.015, 0.005]])
    c = np.array([1.5, -0.5])
    field = np.stack([b[0, 0] * xs + b[0, 1] * ys + c[0], b[1, 0] * xs + b[1, 1] * ys + c[1]], axis=-1)
    matrix = similarity(0.9, -12.0, -20.0, 15.0)
    out = warp_displacement(field.astype(np.float32), matrix, 96)
    inv = invert_affine(matrix)
    for xp, yp in [(10, 10), (48, 50), (90, 70)]:
        x = transform_points(inv, [[xp, yp]])[0]
        if 0 <= x[0] <= w - 1 and 0 <= x[1] <= h - 1:
            expected = matrix[:, :2] @ (b @ x + c)
            np.testing.assert_allclose(out[yp, xp], expected, atol=1e-3)


def test_mapped_field_keeps_the_flow_convention_on_the_crops():
    """onset(x) ~ apex(x + F(x)) in the raw frames => crop_onset(x') ~ crop_apex(x' + F'(x'))."""
    onset = texture(220, 260, seed=1).astype(np.float32)
    d = np.array([4.0, -3.0])
    apex = cv2.warpAffine(onset, np.array([[1, 0, d[0]], [0, 1, d[1]]], np.float64), (260, 220),
                          borderMode=cv2.BORDER_REFLECT_101)  # apex(x) = onset(x - d)
    field = np.broadcast_to(d.astype(np.float32), (220, 260, 2)).copy()
    matrix = similarity(0.6, 25.0, 0.0, 0.0)
    matrix[:, 2] = np.array([40.0, 40.0]) - matrix[:, :2] @ np.array([130.0, 110.0])
    c_onset, c_apex = warp(onset, matrix, 80), warp(apex, matrix, 80)
    mapped = warp_displacement(field, matrix, 80)
    gx, gy = np.meshgrid(np.arange(80, dtype=np.float32), np.arange(80, dtype=np.float32))
    pulled = cv2.remap(c_apex, gx + mapped[..., 0], gy + mapped[..., 1], cv2.INTER_LINEAR)
    inner = (slice(10, 70), slice(10, 70))
    assert np.abs(pulled[inner] - c_onset[inner]).mean() < 2.5  # interpolation only
    assert np.abs(c_apex[inner] - c_onset[inner]).mean() > 5 * np.abs(pulled[inner] - c_onset[inner]).mean()


def test_config_rejects_unknown_keys_and_fingerprint_ignores_runtime_settings():
    with pytest.raises(ValueError, match="crop.sise: unknown key"):
        CropConfig.from_mapping({"sise": 128})
    with pytest.raises(ValueError, match="gray"):
        CropConfig(gray="average")
    base = CropConfig(size=128)
    assert base.fingerprint() == base.replace(workers=7, max_failure_rate=0.5).fingerprint()
    assert base.fingerprint() != base.replace(size=256).fingerprint()
    assert base.fingerprint() != base.replace(dlib={"upsample": 2}).fingerprint()
    assert CropConfig(dlib={"upsample": 2}).dlib["min_score"] == 0.5  # partial sections merge over defaults
