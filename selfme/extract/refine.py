"""Instance refinement of the learned motion (``extract.refine``; a departure, off in the paper's profile).

The learner estimates the dense motion from what its K keypoints carry, at its input size (the demo's
64 px: a 16 x 16 lattice of control points, 8 crop pixels apart). Refinement continues the learner's
own self-supervised objective, the warp loss of training (``loss.warp``: the source warped by the dense
motion alone against the target), on the one pair being extracted and at the crop's resolution. The
learned velocity v (Eq. 9's B-spline field, in crop pixels) gets a correction delta, a cubic B-spline
lattice with ``spacing`` crop pixels between control points, fitted by Adam (``steps``, ``lr`` in
pixels, decaying linearly to 0) to minimise

    E(delta) = mean_p rho(S(p + psi(p)) - T(p)) + smooth * mean_p |grad (v + B delta)(p)|^2,

psi = exp(v + B delta) (scaling and squaring; without ``extract.bspline``, bilinear expansion and no
exponentiation, as the ablation extracts), rho the Charbonnier penalty sqrt(r^2 + eps^2), S and T the
grey source and target frames (values in [0, 1], Gaussian-smoothed with ``sigma`` pixels). This is the
instance-specific optimisation of learning-based image registration (Balakrishnan et al., VoxelMorph,
IEEE TMI 2019, Sec. IV-E): the network gives the start, the pair's own reconstruction error the rest.
Each pair's energy is a mean over its own pixels and the batch's energies are summed, so Adam's
element-wise steps treat every pair as if it were alone (a result does not depend on the batch).

The defaults (besides ``steps``) were chosen on the ground truth of SynthME's 35 training clips, never the
12 held-out ones (docs/motion_learning.md, "Instance refinement"). ``init: zero`` starts from no motion
instead of the learner's, the ablation that says what the learner adds.

The correction is fitted at gamma 1; at gamma != 1 the engine adds gamma * B delta to the velocity of
Eq. 2's amplified keypoints, i.e. the correction is amplified like a displacement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal, Mapping

import cv2
import numpy as np
import torch

from selfme.bspline import scaling_and_squaring, warp
from selfme.config import Section


#: ``init``: ``learned`` refines the learner's velocity; ``zero`` starts from no motion and ignores the learner
#: (the ablation that says what the learner adds: a cubic B-spline diffeomorphic registration on its own).
REFINE_INITS = ("learned", "zero")


@dataclass(frozen=True)
class RefineParams(Section):
    """``extract.refine``: ``steps`` 0 is off (the paper's extraction); ``init`` is checked by Section."""

    SECTION = "extract.refine"

    steps: int = 0
    lr: float = 0.05
    spacing: int = 8
    smooth: float = 1.0
    sigma: float = 0.0
    eps: float = 0.01
    init: Literal[REFINE_INITS] = "learned"

    def __post_init__(self) -> None:
        if self.steps < 0 or self.spacing < 1 or not self.lr > 0 or self.smooth < 0 or self.sigma < 0 \
                or not self.eps > 0:
            raise ValueError("extract.refine: steps >= 0, spacing >= 1, lr > 0, smooth >= 0, sigma >= 0, eps > 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def grey_frames(frames: list[np.ndarray], sigma: float) -> torch.Tensor:
    """uint8 RGB [H, W, 3] or grey ([H, W] or [H, W, 1]) frames -> float32 [B, 1, H, W] in [0, 1], Gaussian-smoothed."""
    out = []
    for frame in frames:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 and frame.shape[2] == 3 \
            else frame.reshape(frame.shape[:2])
        grey = grey.astype(np.float32) / 255.0
        if sigma > 0:
            grey = cv2.GaussianBlur(grey, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
        out.append(grey)
    return torch.from_numpy(np.stack(out)[:, None])


def diffusion(field: torch.Tensor) -> torch.Tensor:
    """Per field mean squared forward difference of [B, 2, H, W] along x and y: [B]."""
    dx = (field[..., :, 1:] - field[..., :, :-1]) ** 2
    dy = (field[..., 1:, :] - field[..., :-1, :]) ** 2
    return dx.sum(dim=(1, 2, 3)) / dx[0].numel() * 0.5 + dy.sum(dim=(1, 2, 3)) / dy[0].numel() * 0.5


def correction_field(delta: torch.Tensor, size: tuple[int, int], spacing: int,
                     expand: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """B delta: the lattice [B, 2, ceil(H / s), ceil(W / s)] expanded and cut to [B, 2, H, W]."""
    return expand(delta, spacing)[..., :size[0], :size[1]]


def refine_velocity(velocity: torch.Tensor, source: torch.Tensor, target: torch.Tensor, params: RefineParams, *,
                    expand: Callable[[torch.Tensor, int], torch.Tensor], ss_steps: int) -> torch.Tensor:
    """The module docstring's correction B delta [B, 2, H, W] (crop pixels) of the gamma-1 velocity
    [B, 2, H, W] for the (source, target) frames [B, 1, H, W]; ``ss_steps`` 0: psi = v (no exponentiation)."""
    size = tuple(velocity.shape[-2:])
    lattice = (velocity.shape[0], 2, math.ceil(size[0] / params.spacing), math.ceil(size[1] / params.spacing))
    velocity, source, target = velocity.detach().float(), source.float(), target.float()
    delta = torch.zeros(lattice, dtype=torch.float32, device=velocity.device, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=params.lr)
    # the step decays linearly to 0: Adam's steps near an L1-like minimum are about lr, so a constant rate jitters
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0 - step / params.steps)
    with torch.enable_grad():
        for _ in range(params.steps):
            optimiser.zero_grad(set_to_none=True)
            field = velocity + correction_field(delta, size, params.spacing, expand)
            psi = scaling_and_squaring(field, ss_steps) if ss_steps else field
            residual = warp(source, psi) - target
            data = torch.sqrt(residual ** 2 + params.eps ** 2).mean(dim=(1, 2, 3))
            energy = data + params.smooth * diffusion(field)
            energy.sum().backward()
            optimiser.step()
            schedule.step()
    return correction_field(delta.detach(), size, params.spacing, expand)
