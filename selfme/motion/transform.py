"""Thin-plate-spline transforms of the image plane, for the equivariance loss (Eq. 7).

T(p) = A p + b + sum_i w_i U(|p - c_i|) with the thin-plate kernel U(r) = r^2 log r^2 (U(0) = 0), in the
normalised coordinates of :func:`selfme.motion.blocks.make_coordinate_grid`. (First Order Motion Model's
``Transform`` uses an L1 distance and one weight per control point shared by x and y; this is the true
thin-plate spline, with a 2-vector weight per control point.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfme.motion.blocks import make_coordinate_grid


def tps_kernel(squared_distance: torch.Tensor) -> torch.Tensor:
    """U = r^2 log r^2 from r^2, exactly 0 at r = 0 with finite gradients (log of a clamped argument)."""
    return squared_distance * torch.log(squared_distance.clamp_min(1e-12))


class ThinPlateSpline:
    """A batch of TPS maps: theta [B, 2, 3] (affine [A | b]), control points [N, 2], weights [B, N, 2]."""

    def __init__(self, theta: torch.Tensor, control_points: torch.Tensor, weights: torch.Tensor) -> None:
        if theta.dim() != 3 or theta.shape[1:] != (2, 3):
            raise ValueError(f"theta must be [B, 2, 3], got {tuple(theta.shape)}")
        if weights.shape != (theta.shape[0], control_points.shape[0], 2):
            raise ValueError(f"weights must be [B, N, 2] = {(theta.shape[0], control_points.shape[0], 2)}, "
                             f"got {tuple(weights.shape)}")
        self.theta, self.control_points, self.weights = theta, control_points, weights
        self.batch_size = theta.shape[0]

    @classmethod
    def identity(cls, batch_size: int, *, points_tps: int = 5, device=None,
                 dtype: torch.dtype = torch.float32) -> "ThinPlateSpline":
        theta = torch.eye(2, 3, dtype=dtype, device=device).expand(batch_size, 2, 3).clone()
        control = make_coordinate_grid((points_tps, points_tps), dtype=dtype, device=device).view(-1, 2)
        return cls(theta, control, torch.zeros(batch_size, control.shape[0], 2, dtype=dtype, device=device))

    @classmethod
    def random(cls, batch_size: int, *, sigma_affine: float = 0.05, sigma_tps: float = 0.005,
               points_tps: int = 5, generator: torch.Generator | None = None, device=None,
               dtype: torch.dtype = torch.float32) -> "ThinPlateSpline":
        """The random transform of the equivariance loss: identity + N(0, sigma_affine) affine noise and
        N(0, sigma_tps) weights on a points_tps x points_tps grid of control points (drawn on the CPU from
        ``generator``, so a run's random stream does not depend on the device)."""
        noise = torch.randn(batch_size, 2, 3, generator=generator) * sigma_affine
        theta = (torch.eye(2, 3).unsqueeze(0) + noise).to(device=device, dtype=dtype)
        control = make_coordinate_grid((points_tps, points_tps), dtype=dtype, device=device).view(-1, 2)
        weights = torch.randn(batch_size, control.shape[0], 2, generator=generator) * sigma_tps
        return cls(theta, control, weights.to(device=device, dtype=dtype))

    @classmethod
    def fit(cls, source_points: torch.Tensor, target_points: torch.Tensor, *,
            regularization: float = 0.0) -> "ThinPlateSpline":
        """The TPS interpolating source [B, N, 2] -> target [B, N, 2] (the classical (N+3) linear system);
        points that differ by an affine map give exactly that affine map and zero kernel weights."""
        b, n, _ = source_points.shape
        if b > 1 and not torch.equal(source_points, source_points[:1].expand_as(source_points)):
            raise ValueError("fit needs the same control points for every batch element")
        src = source_points.double()
        kernel = tps_kernel((src[:, :, None, :] - src[:, None, :, :]).pow(2).sum(-1))  # [B, N, N]
        kernel = kernel + regularization * torch.eye(n, dtype=src.dtype)
        poly = torch.cat([torch.ones(b, n, 1, dtype=src.dtype), src], dim=2)  # [B, N, 3]
        system = torch.zeros(b, n + 3, n + 3, dtype=src.dtype)
        system[:, :n, :n], system[:, :n, n:], system[:, n:, :n] = kernel, poly, poly.transpose(1, 2)
        rhs = torch.cat([target_points.double(), torch.zeros(b, 3, 2, dtype=src.dtype)], dim=1)
        solution = torch.linalg.solve(system, rhs)  # [B, N + 3, 2]
        weights, affine = solution[:, :n], solution[:, n:]  # affine rows: 1, x, y
        theta = torch.cat([affine[:, 1:].transpose(1, 2), affine[:, :1].transpose(1, 2)], dim=2)
        dtype = source_points.dtype
        return cls(theta.to(dtype), source_points[0], weights.to(dtype))

    def warp_coordinates(self, coordinates: torch.Tensor) -> torch.Tensor:
        """T(p) for points [B, P, 2] (or [P, 2], shared) -> [B, P, 2]."""
        if coordinates.dim() == 2:
            coordinates = coordinates.unsqueeze(0).expand(self.batch_size, -1, -1)
        theta = self.theta.to(coordinates.dtype)
        out = coordinates @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)  # [B, P, 2]
        control = self.control_points.to(coordinates)
        d2 = (coordinates.unsqueeze(2) - control.view(1, 1, -1, 2)).pow(2).sum(-1)  # [B, P, N]
        return out + tps_kernel(d2) @ self.weights.to(coordinates.dtype)

    def jacobian(self, coordinates: torch.Tensor) -> torch.Tensor:
        """dT/dp at points [B, P, 2] -> [B, P, 2, 2] (row a, column b: dT_a / dp_b), in closed form:
        A + sum_i w_i (2 (log r_i^2 + 1) (p - c_i))^T, since dU/d(r^2) = log r^2 + 1."""
        theta = self.theta.to(coordinates.dtype)
        control = self.control_points.to(coordinates)
        diff = coordinates.unsqueeze(2) - control.view(1, 1, -1, 2)  # [B, P, N, 2]
        d2 = diff.pow(2).sum(-1)
        slope = 2.0 * (torch.log(d2.clamp_min(1e-12)) + 1.0) * (d2 > 0)  # [B, P, N]
        kernel_grad = torch.einsum("bpn,bpnj,bni->bpij", slope, diff, self.weights.to(coordinates.dtype))
        return theta[:, None, :, :2] + kernel_grad

    def transform_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """The frame resampled at T(p): out(p) = frame(T(p)), [B, C, H, W] (reflection at the borders)."""
        b, _, h, w = frame.shape
        grid = make_coordinate_grid((h, w), dtype=torch.float32, device=frame.device).view(1, h * w, 2)
        grid = self.warp_coordinates(grid.expand(b, -1, -1)).view(b, h, w, 2)
        return F.grid_sample(frame, grid.to(frame.dtype), padding_mode="reflection", align_corners=True)
