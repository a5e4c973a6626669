"""Cubic B-spline expansion (Eq. 9), scaling and squaring, and Jacobian determinants of displacement fields.

All functions are batched, pure torch and run on the tensors' device (GPU when the caller puts them there).
A displacement field is ``[B, 2, H, W]`` in pixels, channel 0 = dx, channel 1 = dy; the map it stands for
is phi(x) = x + u(x).

Control points vs pixels (the alignment convention). A lattice of n control points with integer spacing s
expands to s * n pixels; control point k sits at pixel coordinate ``s * k + (s - 1) / 2``, the centre of the
s x s block of pixels it covers. This is the convention of ``F.interpolate(..., align_corners=False)`` (so the
bilinear ablation, :func:`bilinear_expand`, puts the lattice at the same places) and it is within 1.5 px
(s = 4) of both descriptions of the motion learner's H/4 lattice: its grid coordinate convention
(``align_corners=True``: point k at k (H - 1) / (h - 1)) and its anti-aliased subsampling (pixels 4k).

Boundary handling. The B-spline needs two control points beyond each edge of the lattice; they are
extrapolated linearly from the two outermost ones (c_{-j} = c_0 - j (c_1 - c_0)), so constant and affine
fields are reproduced exactly everywhere, border included, and the border motion is not pulled towards 0
(as zero padding would) or bent (as replication would). Warping in scaling and squaring samples with
``padding_mode='border'`` (the field is extended by its edge values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cubic_bspline(t: torch.Tensor) -> torch.Tensor:
    """The centred uniform cubic B-spline beta3(t) (support (-2, 2), integrates to 1)."""
    a = t.abs()
    inner = 2.0 / 3.0 - a ** 2 + 0.5 * a ** 3
    outer = (2.0 - a).clamp(min=0) ** 3 / 6.0
    return torch.where(a < 1, inner, outer)


def bspline_phase_kernels(spacing: int, *, dtype: torch.dtype = torch.float32,
                          device: torch.device | str | None = None) -> torch.Tensor:
    """Weights [spacing, 5]: row r holds the five control-point weights of output pixel phase r.

    Output pixel x = s m + r (0 <= r < s) is sum_j c_{m - j} beta3((s j + r - (s - 1) / 2) / s), j = -2..2;
    the convolution below reads the padded lattice at m + i (i = 0..4), i.e. j = 2 - i. Stacking the s phases
    and interleaving them is exactly a stride-s transposed convolution with the sampled B-spline kernel.
    """
    s = int(spacing)
    if s < 1:
        raise ValueError(f"spacing must be a positive integer, got {spacing}")
    r = torch.arange(s, dtype=torch.float64)[:, None]
    i = torch.arange(5, dtype=torch.float64)[None, :]
    weights = cubic_bspline((s * (2 - i) + r - (s - 1) / 2.0) / s)
    return weights.to(dtype=dtype, device=device)


def _pad_linear(x: torch.Tensor, dim: int, n: int = 2) -> torch.Tensor:
    """Extend ``x`` by ``n`` linearly extrapolated samples at both ends of ``dim``."""
    size = x.shape[dim]
    if size == 1:
        first = last = x
        step_lo = step_hi = torch.zeros_like(x)
    else:
        first, second = x.narrow(dim, 0, 1), x.narrow(dim, 1, 1)
        last, before = x.narrow(dim, size - 1, 1), x.narrow(dim, size - 2, 1)
        step_lo, step_hi = second - first, last - before
    lo = [first - j * step_lo for j in range(n, 0, -1)]
    hi = [last + j * step_hi for j in range(1, n + 1)]
    return torch.cat(lo + [x] + hi, dim=dim)


def _expand_last_dim(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """B-spline expansion along the last dim: [N, L] -> [N, s * L] (s = number of phase kernels)."""
    padded = _pad_linear(x, dim=-1)  # [N, L + 4]
    phases = F.conv1d(padded.unsqueeze(1), kernels.unsqueeze(1))  # [N, s, L]
    return phases.transpose(1, 2).reshape(x.shape[0], -1)  # interleave: pixel s m + r <- phase r of m


def bspline_expand(control: torch.Tensor, spacing: int = 4) -> torch.Tensor:
    """Eq. 9: expand a control-point displacement lattice [B, C, h, w] to [B, C, s h, s w] (separable).

    Values are not rescaled: a lattice of pixel displacements stays in pixels of the output grid.
    """
    if control.ndim != 4:
        raise ValueError(f"expected [B, C, h, w], got {tuple(control.shape)}")
    b, c, h, w = control.shape
    work = control if control.dtype in (torch.float32, torch.float64) else control.float()
    kernels = bspline_phase_kernels(spacing, dtype=work.dtype, device=work.device)
    s = kernels.shape[0]
    rows = _expand_last_dim(work.reshape(b * c * h, w), kernels).reshape(b, c, h, s * w)
    cols = rows.transpose(2, 3).reshape(b * c * s * w, h)
    out = _expand_last_dim(cols, kernels).reshape(b, c, s * w, s * h).transpose(2, 3)
    return out.contiguous().to(control.dtype)


def bilinear_expand(control: torch.Tensor, spacing: int = 4) -> torch.Tensor:
    """The Table 1 ablation: plain bilinear upsampling of the lattice, same alignment as :func:`bspline_expand`."""
    return F.interpolate(control, scale_factor=int(spacing), mode="bilinear", align_corners=False)


def _pixel_grid(h: int, w: int, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Pixel coordinates [1, 2, H, W] (x, y)."""
    ys = torch.arange(h, dtype=dtype, device=device)
    xs = torch.arange(w, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy])[None]


def warp(field: torch.Tensor, displacement: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``field`` [B, C, H, W] at x + displacement(x) (pixels; bilinear, border extension)."""
    _, _, h, w = displacement.shape
    pos = _pixel_grid(h, w, dtype=displacement.dtype, device=displacement.device) + displacement
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], dtype=pos.dtype, device=pos.device)
    grid = (pos * scale.view(1, 2, 1, 1) - 1.0).permute(0, 2, 3, 1)
    return F.grid_sample(field.to(grid.dtype), grid, mode=mode, padding_mode="border", align_corners=True)


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Displacement of (x -> x + outer) o (x -> x + inner): u(x) = inner(x) + outer(x + inner(x))."""
    return inner + warp(outer, inner)


def scaling_and_squaring(velocity: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """exp(v) of a stationary velocity field (Arsigny et al., MICCAI 2006): [B, 2, H, W] -> displacement.

    phi = exp(v) is approximated by (id + v / 2^N) composed with itself 2^N times, done in N squarings
    phi_{2t} = phi_t o phi_t (bilinear resampling). For a smooth v the result is a diffeomorphism: it has a
    positive Jacobian determinant and exp(-v) is its inverse. ``steps`` 0 returns v (no exponentiation).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    disp = velocity.float() / (2 ** steps)
    for _ in range(steps):
        disp = compose(disp, disp)
    return disp


def invert_displacement(displacement: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """Displacement of the inverse map by fixed-point iteration w(x) = -u(x + w(x)) (exact for
    translations; converges when the map is locally invertible, |grad u| < 1)."""
    disp = displacement.float()
    inverse = -disp
    for _ in range(int(iterations)):
        inverse = -warp(disp, inverse)
    return inverse


def jacobian_determinant(displacement: torch.Tensor) -> torch.Tensor:
    """det of the Jacobian of phi(x) = x + u(x): [B, 2, H, W] -> [B, H, W].

    Derivatives by finite differences: central in the interior, one-sided on the border rows/columns.
    """
    u = displacement.float()
    if min(u.shape[-2:]) < 2:
        raise ValueError("the field needs at least 2 x 2 pixels")
    dx = torch.gradient(u, dim=3)[0]  # d/dx of (ux, uy)
    dy = torch.gradient(u, dim=2)[0]  # d/dy
    return (1.0 + dx[:, 0]) * (1.0 + dy[:, 1]) - dy[:, 0] * dx[:, 1]


def folding_fraction(displacement: torch.Tensor) -> torch.Tensor:
    """Fraction of pixels where det J <= 0 (the map folds), per field: [B, 2, H, W] -> [B]."""
    return (jacobian_determinant(displacement) <= 0).float().mean(dim=(1, 2))


def lattice_spacing(lattice_size: int, image_size: int) -> int:
    """The integer spacing s with s * lattice = image (e.g. the H/4 lattice -> 4), or a clear error."""
    s = image_size / lattice_size
    if abs(s - round(s)) > 1e-9 or round(s) < 1:
        raise ValueError(f"lattice of {lattice_size} points does not tile {image_size} pixels with an integer "
                         f"spacing")
    return int(round(s))


__all__ = ["bilinear_expand", "bspline_expand", "bspline_phase_kernels", "compose", "cubic_bspline",
           "folding_fraction", "invert_displacement", "jacobian_determinant", "lattice_spacing",
           "scaling_and_squaring", "warp"]
