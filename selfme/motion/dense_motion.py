"""F_dense, the dense motion network (Sec. 3.2, Eq. 2-5), zeroth order.

``residual_flow`` (a departure, off by default): in Eq. 2-5 everything the network knows of the target
passes through the K keypoints (2K numbers), so the dense motion is a soft blend of K + 1 translations
and cannot bend where no keypoint sits, such as a mouth corner in a micro-expression. With it the
hourglass also sees the target frame (at its own scale) and a 7 x 7 convolution adds a free residual
displacement to Eq. 5's blend (initialised to zero, so training starts from the keypoint motion; scaled
by gamma like the local motions). The warp loss (``loss.warp``) is what makes the residual a motion.
The residual is bounded, RESIDUAL_BOUND * tanh(.) in normalised coordinates (0.05: 1.6 px of a 64-px
input, about a micro-expression's whole apex motion): an unbounded head diverged in the demo (held-out
expression EPE 8.1 px, the warped source worse than the identity; docs/motion_learning.md).

Conventions (shared with the generator and the extraction stage):

* the motion is *backward*: for every target position p, ``deformation[p]`` is where to sample the source,
  so ``target(p) ~= source(p + d(p))``;
* ``deformation`` is a ``grid_sample`` grid [B, h, w, 2] in normalised (x, y) (``align_corners=True``);
* ``displacement`` is d in *pixels of the input crop*, [B, 2, h, w] with channel 0 = dx, 1 = dy, on the
  H/4 x W/4 lattice (scale_factor 0.25). Lattice point (i, j) lies at crop pixel
  (i * (H - 1) / (h - 1), j * (W - 1) / (w - 1)), i.e. a spacing of about 1 / scale_factor pixels;
* in OpenCV terms d is ``cv2.calcOpticalFlowFarneback(target, source, ...)``'s flow: ``cv2.remap(source,
  x + d_x, y + d_y)`` reproduces the target (see :func:`displacement_to_opencv_flow`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfme.motion.blocks import AntiAliasInterpolation2d, Hourglass, kp2gaussian, make_coordinate_grid

#: ``residual_flow``'s bound on the residual displacement, normalised coordinates (see the module docstring)
RESIDUAL_BOUND = 0.05


class DenseMotionNetwork(nn.Module):
    """Keypoints of source and target + source image -> dense motion and occlusion at ``scale_factor``."""

    def __init__(self, *, num_kp: int, num_channels: int = 3, block_expansion: int = 64,
                 max_features: int = 1024, num_blocks: int = 5, scale_factor: float = 0.25,
                 kp_variance: float = 0.01, estimate_occlusion_map: bool = True, padding: str = "zeros",
                 residual_flow: bool = False) -> None:
        super().__init__()
        self.padding = padding  # grid_sample's padding_mode for the deformed sources (the generator's warp_padding)
        in_features = (num_kp + 1) * (num_channels + 1) + (num_channels if residual_flow else 0)
        self.hourglass = Hourglass(block_expansion=block_expansion, in_features=in_features,
                                   max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.residual = None
        if residual_flow:  # zero at the start: training begins from Eq. 5's keypoint motion
            self.residual = nn.Conv2d(self.hourglass.out_filters, 2, kernel_size=7, padding=3)
            nn.init.zeros_(self.residual.weight), nn.init.zeros_(self.residual.bias)
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3)
                          if estimate_occlusion_map else None)
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    @property
    def residual_flow(self) -> bool:
        """Whether the network sees the target and adds the residual displacement (the ``residual`` head)."""
        return self.residual is not None

    @staticmethod
    def local_motions(kp_source: torch.Tensor, kp_target: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
        """Eq. 2: zeroth-order local motion of keypoint k, gamma * (z_s^k - z_t^k): [B, K, 2] (normalised)."""
        return gamma * (kp_source - kp_target)

    def create_heatmap_representations(self, spatial_size: tuple[int, int], kp_source: torch.Tensor,
                                       kp_target: torch.Tensor) -> torch.Tensor:
        """Eq. 3: H_k = G(z_t^k) - G(z_s^k) with variance kp_variance, plus a zero background map.

        -> [B, K + 1, 1, h, w]
        """
        heatmap = (kp2gaussian(kp_target, spatial_size, self.kp_variance)
                   - kp2gaussian(kp_source, spatial_size, self.kp_variance))  # [B, K, h, w]
        zeros = heatmap.new_zeros(heatmap.shape[0], 1, *heatmap.shape[2:])
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def create_sparse_motions(self, spatial_size: tuple[int, int], kp_source: torch.Tensor,
                              kp_target: torch.Tensor, gamma: float = 1.0,
                              jacobian_source: torch.Tensor | None = None,
                              jacobian_target: torch.Tensor | None = None) -> torch.Tensor:
        """Sampling grids of the K local motions and the identity -> [B, K + 1, h, w, 2] (index 0: background).

        Zeroth order (Eq. 2, the paper's): T_k(p) = p + gamma (z_s^k - z_t^k). With Jacobians (First Order
        Motion Model's first-order local motion, ``estimate_jacobian``): T_k(p) = p + gamma (z_s^k +
        J_k (p - z_t^k) - p) with J_k = J_s^k (J_t^k)^-1; gamma 1 is FOMM's T_k(p) = z_s^k + J_k (p - z_t^k),
        and gamma scales the whole local displacement, as it scales the keypoint displacement in Eq. 2.
        """
        b = kp_source.shape[0]
        identity = make_coordinate_grid(spatial_size, dtype=kp_source.dtype, device=kp_source.device)
        identity = identity.view(1, 1, *identity.shape)  # [1, 1, h, w, 2]
        local = self.local_motions(kp_source, kp_target, gamma).view(b, self.num_kp, 1, 1, 2)
        motions = identity + local
        if jacobian_source is not None and jacobian_target is not None:
            jacobian = torch.matmul(jacobian_source.float(), torch.inverse(jacobian_target.float()))  # [B, K, 2, 2]
            eye = torch.eye(2, dtype=jacobian.dtype, device=jacobian.device)
            offset = identity - kp_target.view(b, self.num_kp, 1, 1, 2)  # p - z_t, [B, K, h, w, 2]
            linear = torch.einsum("bkij,bkhwj->bkhwi", jacobian - eye, offset.to(jacobian.dtype))
            motions = motions + gamma * linear.to(motions.dtype)
        return torch.cat([identity.expand(b, 1, -1, -1, -1), motions], dim=1)

    def create_deformed_source_image(self, source: torch.Tensor, sparse_motions: torch.Tensor) -> torch.Tensor:
        """The source warped by each local motion: [B, C, h, w] x [B, K+1, h, w, 2] -> [B, K+1, C, h, w]."""
        b, c, h, w = source.shape
        k1 = sparse_motions.shape[1]
        repeated = source.unsqueeze(1).expand(b, k1, c, h, w).reshape(b * k1, c, h, w)
        grids = sparse_motions.reshape(b * k1, h, w, 2).to(repeated.dtype)
        warped = F.grid_sample(repeated, grids, padding_mode=self.padding, align_corners=True)
        return warped.view(b, k1, c, h, w)

    def forward(self, source: torch.Tensor, *, kp_source: torch.Tensor, kp_target: torch.Tensor,
                gamma: float = 1.0, jacobian_source: torch.Tensor | None = None,
                jacobian_target: torch.Tensor | None = None,
                target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Source [B, C, H, W], keypoints [B, K, 2] (Jacobians [B, K, 2, 2] optional; the target frame
        [B, C, H, W] with ``residual_flow``) -> dict of

        mask [B, K+1, h, w] (psi, Eq. 4), sparse_deformed [B, K+1, C, h, w], deformation [B, h, w, 2]
        (Eq. 5), displacement [B, 2, h, w] (pixels of the input), occlusion_map [B, 1, h, w] (if estimated).
        """
        if self.residual_flow and target is None:
            raise ValueError("dense_motion.residual_flow needs the target frame")
        full_size = source.shape[2:]
        if self.scale_factor != 1:
            source = self.down(source)
            target = self.down(target) if self.residual_flow else None
        b, _, h, w = source.shape
        heatmaps = self.create_heatmap_representations((h, w), kp_source, kp_target)
        sparse_motions = self.create_sparse_motions((h, w), kp_source, kp_target, gamma,
                                                    jacobian_source, jacobian_target)
        deformed = self.create_deformed_source_image(source, sparse_motions)
        features = torch.cat([heatmaps.to(deformed.dtype), deformed], dim=2).view(b, -1, h, w)
        if self.residual_flow:
            features = torch.cat([features, target.to(features.dtype)], dim=1)
        prediction = self.hourglass(features)
        # Eq. 4: psi, a softmax over the K keypoints and the background at every position.
        mask = F.softmax(self.mask(prediction).float(), dim=1)  # [B, K+1, h, w]
        # Eq. 5: the dense motion is the psi-weighted sum of the local motions.
        deformation = (sparse_motions * mask.unsqueeze(-1)).sum(dim=1)  # [B, h, w, 2]
        if self.residual_flow:  # a departure: plus a free residual, scaled by gamma as Eq. 2's motions
            residual = RESIDUAL_BOUND * torch.tanh(self.residual(prediction).float())  # [B, 2, h, w]
            deformation = deformation + gamma * residual.permute(0, 2, 3, 1)
        out = {"mask": mask, "sparse_deformed": deformed, "deformation": deformation,
               "displacement": grid_to_displacement(deformation, full_size)}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction).float())
        return out


def grid_to_displacement(deformation: torch.Tensor, image_size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Sampling grid [B, h, w, 2] (normalised) -> displacement [B, 2, h, w] in pixels of an H x W image."""
    h, w = deformation.shape[1:3]
    identity = make_coordinate_grid((h, w), dtype=deformation.dtype, device=deformation.device)
    disp = deformation - identity[None]
    scale = torch.tensor([(image_size[1] - 1) / 2.0, (image_size[0] - 1) / 2.0], dtype=disp.dtype,
                         device=disp.device)
    return (disp * scale).permute(0, 3, 1, 2).contiguous()


def displacement_to_grid(displacement: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`grid_to_displacement`: [B, 2, h, w] pixels -> [B, h, w, 2] normalised grid."""
    h, w = displacement.shape[2:]
    identity = make_coordinate_grid((h, w), dtype=displacement.dtype, device=displacement.device)
    scale = torch.tensor([2.0 / (image_size[1] - 1), 2.0 / (image_size[0] - 1)], dtype=displacement.dtype,
                         device=displacement.device)
    return identity[None] + displacement.permute(0, 2, 3, 1) * scale


def displacement_to_opencv_flow(displacement: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """[B, 2, h, w] pixel displacement -> float32 numpy [B, H, W, 2], OpenCV's flow layout.

    With ``size`` (H, W) the lattice is bilinearly resized to the full crop (values stay in pixels). The
    result is the flow from target to source (``calcOpticalFlowFarneback(target, source)``): ``cv2.remap``
    of the source at ``x + flow[..., 0], y + flow[..., 1]`` gives the target. Bilinear resizing is only a
    preview; the extraction stage expands the lattice with a cubic B-spline instead.
    """
    if size is not None and tuple(displacement.shape[2:]) != tuple(size):
        displacement = F.interpolate(displacement.float(), size=tuple(size), mode="bilinear", align_corners=True)
    return displacement.permute(0, 2, 3, 1).detach().float().cpu().numpy().astype(np.float32)
