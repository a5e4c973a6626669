"""Cubic B-spline expansion (Eq. 9), scaling and squaring, Jacobian determinants (selfme.bspline)."""

from __future__ import annotations

import pytest
import torch

from selfme.bspline import (bilinear_expand, bspline_expand, bspline_phase_kernels, compose, cubic_bspline,
                            folding_fraction, invert_displacement, jacobian_determinant, lattice_spacing,
                            scaling_and_squaring, warp)


def pixel_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                          indexing="ij")


def control_positions(h: int, w: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates of the control points (the documented convention: s k + (s - 1) / 2)."""
    yy, xx = pixel_grid(h, w)
    return yy * s + (s - 1) / 2.0, xx * s + (s - 1) / 2.0


def smooth_field(seed: int, amplitude: float, lattice: int = 16, spacing: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return bspline_expand(torch.randn(1, 2, lattice, lattice, generator=g, dtype=torch.float64) * amplitude,
                          spacing).float()


def test_kernel_is_a_partition_of_unity_and_symmetric():
    assert float(cubic_bspline(torch.tensor(0.0))) == pytest.approx(2 / 3)
    assert float(cubic_bspline(torch.tensor(2.0))) == 0.0
    for s in (1, 2, 3, 4, 8):
        k = bspline_phase_kernels(s, dtype=torch.float64)
        assert torch.allclose(k.sum(dim=1), torch.ones(s, dtype=torch.float64))
        assert torch.allclose(k, k.flip(0).flip(1))  # phase r mirrors phase s-1-r


@pytest.mark.parametrize("spacing", [4, 3, 2])
def test_constant_and_linear_fields_are_reproduced_exactly(spacing):
    h, w = 6, 9
    cy, cx = control_positions(h, w, spacing)
    a = torch.tensor([[0.31, -0.2, 1.5], [-0.07, 0.12, -2.0]], dtype=torch.float64)  # affine coefficients
    control = torch.stack([a[i, 0] * cx + a[i, 1] * cy + a[i, 2] for i in range(2)])[None]
    dense = bspline_expand(control, spacing)
    assert dense.shape == (1, 2, spacing * h, spacing * w)
    yy, xx = pixel_grid(spacing * h, spacing * w)
    expected = torch.stack([a[i, 0] * xx + a[i, 1] * yy + a[i, 2] for i in range(2)])[None]
    # Exactly, border included (linear extrapolation of the lattice), and a fortiori away from it.
    assert torch.allclose(dense, expected, atol=1e-10)
    constant = bspline_expand(torch.full((2, 3, h, w), 1.25, dtype=torch.float64), spacing)
    assert torch.allclose(constant, torch.full_like(constant, 1.25), atol=1e-12)


def test_bspline_smooths_and_keeps_dtype_and_batch():
    control = torch.zeros(3, 2, 8, 8)
    control[1, 0, 4, 4] = 1.0  # one control point moves
    dense = bspline_expand(control, 4)
    assert dense.dtype == torch.float32 and dense.shape == (3, 2, 32, 32)
    assert dense[0].abs().max() == 0 and dense[2].abs().max() == 0  # batch items are independent
    bump = dense[1, 0]
    assert bump.max() == pytest.approx(float(cubic_bspline(torch.tensor(0.125))) ** 2, rel=1e-5)
    assert float(bump.sum()) == pytest.approx(16.0, rel=1e-5)  # integral = spacing^2 x the control value
    assert bump[(bump > 0)].numel() == 16 * 16  # support (-2 s, 2 s) around a half-pixel centre: 4 s pixels
    assert bilinear_expand(control, 4).shape == dense.shape


def test_lattice_spacing():
    assert lattice_spacing(64, 256) == 4
    with pytest.raises(ValueError):
        lattice_spacing(30, 128)


def test_scaling_and_squaring_matches_many_small_compositions():
    v = smooth_field(0, amplitude=0.4, lattice=10)  # smooth, about 1 px
    steps = 7
    exp_v = scaling_and_squaring(v, steps)
    small = v / 2 ** steps
    composed = torch.zeros_like(v)
    for _ in range(2 ** steps):  # (id + v / 2^N) composed with itself 2^N times, one at a time
        composed = compose(small, composed)
    interior = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert (exp_v - composed)[interior].abs().max() < 0.02
    assert (exp_v - v)[interior].abs().max() > 0.01  # the exponential is not the field itself


def test_scaling_and_squaring_of_a_translation_and_its_inverse():
    t = torch.zeros(1, 2, 16, 16)
    t[:, 0], t[:, 1] = 1.3, -0.4
    assert torch.allclose(scaling_and_squaring(t, 7), t, atol=1e-5)
    assert torch.allclose(scaling_and_squaring(t, 0), t)
    v = smooth_field(3, amplitude=0.5, lattice=8)
    identity = compose(scaling_and_squaring(-v), scaling_and_squaring(v))
    assert identity[..., 4:-4, 4:-4].abs().max() < 0.08  # exp(-v) o exp(v) = id


def test_invert_displacement():
    t = torch.zeros(1, 2, 12, 12)
    t[:, 0], t[:, 1] = -0.7, 2.0
    assert torch.allclose(invert_displacement(t), -t, atol=1e-5)
    v = smooth_field(1, amplitude=0.3, lattice=8)
    inv = invert_displacement(v)
    assert compose(v, inv)[..., 4:-4, 4:-4].abs().max() < 0.02


def test_warp_samples_at_displaced_positions():
    yy, xx = pixel_grid(10, 12)
    field = torch.stack([xx, yy])[None].float()
    d = torch.full((1, 2, 10, 12), 0.5)
    out = warp(field, d)
    assert torch.allclose(out[..., 2:-2, 2:-2], field[..., 2:-2, 2:-2] + 0.5, atol=1e-5)


def test_jacobian_determinant_of_affine_fields():
    yy, xx = pixel_grid(20, 20)
    a = torch.tensor([[0.2, 0.1], [-0.3, 0.05]], dtype=torch.float64)
    u = torch.stack([a[0, 0] * xx + a[0, 1] * yy, a[1, 0] * xx + a[1, 1] * yy])[None]
    expected = float(torch.linalg.det(torch.eye(2, dtype=torch.float64) + a))
    assert torch.allclose(jacobian_determinant(u), torch.full((1, 20, 20), expected, dtype=torch.float32), atol=1e-5)
    fold = torch.stack([-1.5 * xx, torch.zeros_like(xx)])[None]  # x -> -0.5 x: orientation reversed
    assert float(folding_fraction(fold)) == 1.0
    assert float(folding_fraction(u)) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_scaling_and_squaring_removes_folding(seed):
    # Below a magnitude bound neither the field nor its exponential folds ...
    small = smooth_field(seed, amplitude=0.5)
    assert float(folding_fraction(small)) == 0.0
    assert float(jacobian_determinant(scaling_and_squaring(small, 7)).min()) > 0
    # ... while a larger one folds as a displacement (x + v(x)) but not once exponentiated.
    large = smooth_field(seed, amplitude=2.0)
    assert float(folding_fraction(large)) > 0.001
    assert float(jacobian_determinant(scaling_and_squaring(large, 7)).min()) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda():
    v = smooth_field(0, amplitude=1.0).cuda()
    out = scaling_and_squaring(bspline_expand(v[..., ::4, ::4], 4), 7)
    assert out.is_cuda and folding_fraction(out).is_cuda
