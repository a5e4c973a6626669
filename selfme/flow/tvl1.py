"""TV-L1 optical flow (Zach, Pock & Bischof 2007; Sanchez, Meinhardt-Llopis & Facciolo, IPOL 2013), batched
in torch (GPU when the tensors are on one), following OpenCV's ``cv::optflow::DualTVL1OpticalFlow``.

The energy is E(u) = sum |grad u1| + |grad u2| + lambda |rho(u)| with the linearised residual
rho(u) = I1(x + u0) + grad I1(x + u0) . (u - u0) - I0(x). It is split with an auxiliary field v and a
coupling (1 / 2 theta) |u - v|^2 and solved by alternating

* the thresholding step (TH, point-wise): v = u + {lambda theta grad I1 if rho < -lambda theta |grad I1|^2;
  -lambda theta grad I1 if rho > lambda theta |grad I1|^2; -rho grad I1 / |grad I1|^2 otherwise};
* u = v + theta div p;
* the dual ROF step (Chambolle's projection): p = (p + tau / theta grad u) / (1 + tau / theta |grad u|);

inside ``warps`` re-linearisations per scale of a coarse-to-fine pyramid. What OpenCV does and this file
copies: images as grey levels 0..255 without pre-smoothing; pyramid by bilinear resizing with factor
``scale_step`` (sizes rounded, levels below 16 px dropped); flow upsampled bilinearly and divided by
``scale_step``; I1 and its centred gradient warped with bicubic interpolation (A = -0.75, coordinates
rounded to 1/32 px as ``cv::remap`` does, zeros outside); a 5 x 5 median filter of u (replicated border) at
the start of each outer iteration; up to ``outer_iterations`` x ``inner_iterations`` iterations per warp,
stopping when sum |u^{n+1} - u^n|^2 <= epsilon^2 * area. The flow F is OpenCV's forward flow:
I0(x) ~= I1(x + F(x)).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

REMAP_SUBPIXELS = 32  # cv::remap's INTER_TAB_SIZE


@dataclass(frozen=True)
class TVL1Params:
    """OpenCV's defaults (``cv2.optflow.DualTVL1OpticalFlow_create()``)."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_filtering: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.scale_step < 1:
            raise ValueError(f"scale_step must be in (0, 1), got {self.scale_step}")
        if self.median_filtering not in (0, 1, 3, 5):
            raise ValueError(f"median_filtering must be 0, 1, 3 or 5 (OpenCV's float median), "
                             f"got {self.median_filtering}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, *, prefix: str = "tvl1") -> "TVL1Params":
        """From a ``tvl1`` section (``lambda`` spelled as OpenCV does); bad keys and values are a
        :class:`selfme.config.ParamsError` naming ``prefix.key``."""
        from selfme.config import from_mapping

        values = dict(values or {})
        if "lambda" in values:
            values["lambda_"] = values.pop("lambda")
        return from_mapping(cls, values, prefix=prefix)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lambda"] = out.pop("lambda_")
        return out


def _sample(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, mode: str, padding: str) -> torch.Tensor:
    """Sample [B, C, H, W] at pixel coordinates x, y [B, H', W'] (align_corners=True pixel centres)."""
    h, w = image.shape[-2:]
    grid = torch.stack([x * (2.0 / max(w - 1, 1)) - 1.0, y * (2.0 / max(h - 1, 1)) - 1.0], dim=-1)
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding, align_corners=True)


def _cv_resize(image: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
    """``cv::resize(INTER_LINEAR)``: dst (x + 0.5) / scale - 0.5 sampled bilinearly, border clamped."""
    h, w = size
    ys = (torch.arange(h, dtype=image.dtype, device=image.device) + 0.5) / scale[1] - 0.5
    xs = (torch.arange(w, dtype=image.dtype, device=image.device) + 0.5) / scale[0] - 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    b = image.shape[0]
    return _sample(image, xx.expand(b, h, w), yy.expand(b, h, w), mode="bilinear", padding="border")


def _centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's centredGradient: half central differences, half one-sided ones on the border."""
    pad_x = torch.cat([img[..., :1], img, img[..., -1:]], dim=-1)
    pad_y = torch.cat([img[..., :1, :], img, img[..., -1:, :]], dim=-2)
    return 0.5 * (pad_x[..., 2:] - pad_x[..., :-2]), 0.5 * (pad_y[..., 2:, :] - pad_y[..., :-2, :])


def _forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences, 0 on the last column (x) / row (y)."""
    dx = F.pad(u[..., 1:] - u[..., :-1], (0, 1))
    dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return dx, dy


def _divergence(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence (the adjoint of -forward gradient), p = 0 before the first row/col."""
    return (p1 - F.pad(p1[..., :-1], (1, 0))) + (p2 - F.pad(p2[..., :-1, :], (0, 0, 1, 0)))


def _median(u: torch.Tensor, k: int) -> torch.Tensor:
    """k x k median with replicated borders (``cv::medianBlur``): [B, H, W] -> [B, H, W].

    On the CPU it is OpenCV's own medianBlur (exact, and much faster than sorting); elsewhere
    :func:`_median_unfold`.
    """
    if u.device.type == "cpu":
        import cv2

        planes = [cv2.medianBlur(np.ascontiguousarray(x), k) for x in u.numpy()]
        return torch.from_numpy(np.stack(planes))
    return _median_unfold(u, k)


def _median_unfold(u: torch.Tensor, k: int) -> torch.Tensor:
    """The same median as a torch operation (GPU): the middle of each unfolded k x k patch."""
    r = k // 2
    padded = F.pad(u[:, None], (r, r, r, r), mode="replicate")
    patches = F.unfold(padded, kernel_size=k)  # [B, k*k, H*W]
    return patches.median(dim=1).values.view_as(u)


def _where(active: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per-sample update: samples that have met the stopping rule keep their values."""
    if active.numel() == 1:
        return new if bool(active) else old
    return torch.where(active.view(-1, 1, 1), new, old)


def _pyramid_sizes(h: int, w: int, params: TVL1Params) -> list[tuple[int, int]]:
    sizes = [(h, w)]
    for _ in range(1, params.nscales):
        ph, pw = sizes[-1]
        nh, nw = int(np.rint(ph * params.scale_step)), int(np.rint(pw * params.scale_step))
        if nh < 16 or nw < 16:
            break
        sizes.append((nh, nw))
    return sizes


def _one_scale(i0: torch.Tensor, i1: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
               params: TVL1Params) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's procOneScale on a batch; a sample stops iterating when its own criterion is met."""
    b, h, w = i0.shape
    scaled_eps = params.epsilon ** 2 * h * w
    l_t = params.lambda_ * params.theta
    taut = params.tau / params.theta
    i1x, i1y = _centered_gradient(i1)
    stack = torch.stack([i1, i1x, i1y], dim=1)  # [B, 3, H, W]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=i0.dtype, device=i0.device),
                            torch.arange(w, dtype=i0.dtype, device=i0.device), indexing="ij")
    p11, p12, p21, p22 = (torch.zeros_like(i0) for _ in range(4))
    for _ in range(params.warps):
        mx = torch.round((xs + u1) * REMAP_SUBPIXELS) / REMAP_SUBPIXELS
        my = torch.round((ys + u2) * REMAP_SUBPIXELS) / REMAP_SUBPIXELS
        warped = _sample(stack, mx, my, mode="bicubic", padding="zeros")
        i1w, i1wx, i1wy = warped[:, 0], warped[:, 1], warped[:, 2]
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
        # TH (estimateV) as a clamp: fi = -rho / |grad I1|^2 limited to [-lambda theta, lambda theta]; this is
        # OpenCV's three-branch rule (it differs only where |grad I1|^2 < float eps, by < 1e-5 px).
        inv_grad = 1.0 / grad.clamp(min=1e-30)
        active = torch.ones(b, dtype=torch.bool, device=i0.device)
        for _outer in range(params.outer_iterations):
            if params.median_filtering > 1:
                u1 = _where(active, _median(u1, params.median_filtering), u1)
                u2 = _where(active, _median(u2, params.median_filtering), u2)
            for _inner in range(params.inner_iterations):
                fi = (-(rho_c + i1wx * u1 + i1wy * u2) * inv_grad).clamp_(-l_t, l_t)
                # u = v + theta div p (estimateU), v = u + fi grad I1.
                n1 = u1 + fi * i1wx + params.theta * _divergence(p11, p12)
                n2 = u2 + fi * i1wy + params.theta * _divergence(p21, p22)
                error = ((n1 - u1).square_() + (n2 - u2).square_()).sum(dim=(1, 2))
                u1, u2 = _where(active, n1, u1), _where(active, n2, u2)
                # Dual ROF step (estimateDualVariables): p = (p + tau/theta grad u) / (1 + tau/theta |grad u|).
                u1x, u1y = _forward_gradient(u1)
                u2x, u2y = _forward_gradient(u2)
                ng1 = torch.hypot(u1x, u1y).mul_(taut).add_(1.0)
                ng2 = torch.hypot(u2x, u2y).mul_(taut).add_(1.0)
                p11 = _where(active, (p11 + taut * u1x) / ng1, p11)
                p12 = _where(active, (p12 + taut * u1y) / ng1, p12)
                p21 = _where(active, (p21 + taut * u2x) / ng2, p21)
                p22 = _where(active, (p22 + taut * u2y) / ng2, p22)
                active = active & (error > scaled_eps)
                if not bool(active.any()):
                    break
            if not bool(active.any()):
                break
    return u1, u2


@contextlib.contextmanager
def _intra_op_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _tvl1_batch(t0: torch.Tensor, t1: torch.Tensor, params: TVL1Params) -> torch.Tensor:
    sizes = _pyramid_sizes(t0.shape[1], t0.shape[2], params)
    pyr0, pyr1 = [t0], [t1]
    step = (params.scale_step, params.scale_step)
    for size in sizes[1:]:
        pyr0.append(_cv_resize(pyr0[-1][:, None], size, step)[:, 0])
        pyr1.append(_cv_resize(pyr1[-1][:, None], size, step)[:, 0])
    u1 = torch.zeros_like(pyr0[-1])
    u2 = torch.zeros_like(pyr0[-1])
    for s in range(len(sizes) - 1, -1, -1):
        u1, u2 = _one_scale(pyr0[s], pyr1[s], u1, u2, params)
        if s == 0:
            break
        (h, w), (ph, pw) = sizes[s - 1], sizes[s]
        up = _cv_resize(torch.stack([u1, u2], dim=1), (h, w), (w / pw, h / ph)) / params.scale_step
        u1, u2 = up[:, 0], up[:, 1]
    return torch.stack([u1, u2], dim=-1)


def tvl1_flow(i0: torch.Tensor | np.ndarray, i1: torch.Tensor | np.ndarray, params: TVL1Params | None = None,
              *, device: torch.device | str | None = None) -> torch.Tensor:
    """TV-L1 flow from I0 to I1: grey images [B, H, W] or [H, W] (uint8 or float in 0..255) -> [B, H, W, 2]
    float32 (dx, dy) with I0(x) ~= I1(x + F(x)), on ``device`` (default: the input's, CPU for numpy).

    On a GPU the batch runs at once (a sample that has converged stops changing). On the CPU the pairs run
    one after the other on one intra-op thread: the operations are small, and this is several times faster
    than batching them on several threads.
    """
    params = params or TVL1Params()
    t0, t1 = (torch.as_tensor(np.asarray(a) if isinstance(a, np.ndarray) else a) for a in (i0, i1))
    if t0.shape != t1.shape or t0.ndim not in (2, 3):
        raise ValueError(f"expected two grey images of the same shape [B, H, W], got {tuple(t0.shape)}, "
                         f"{tuple(t1.shape)}")
    squeeze = t0.ndim == 2
    t0 = t0.to(device=device or t0.device, dtype=torch.float32).reshape(-1, *t0.shape[-2:])
    t1 = t1.to(device=t0.device, dtype=torch.float32).reshape(-1, *t1.shape[-2:])
    with torch.no_grad():
        if t0.device.type == "cpu":
            with _intra_op_threads(1):
                flow = torch.cat([_tvl1_batch(t0[k:k + 1], t1[k:k + 1], params) for k in range(len(t0))])
        else:
            flow = _tvl1_batch(t0, t1, params)
    return flow[0] if squeeze else flow
