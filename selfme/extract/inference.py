"""The motion learner in inference form: the same function as the trained networks, less arithmetic.

Extraction only needs the learner's dense motion (``estimate_motion``'s displacement). The rewrites of a
copy of the learner (the caller's model is left as it is) remove work that does not change it beyond
float rounding; each rewritten block is checked against the block it replaces on a probe input before it
is used, and kept as it was when they disagree (a block whose definition changed):

* ``UpBlock2d`` (nearest x2 upsampling, 3 x 3 convolution, BN, ReLU) as four 2 x 2 convolutions of the
  low-resolution input, one per output phase, with BN folded into them. Nearest upsampling repeats every
  pixel twice, so output row 2i + p of the 3 x 3 convolution reads low-resolution rows (i - 1, i, i) for
  p = 0 and (i, i, i + 1) for p = 1: kernel rows (k0, k1 + k2) on rows (i - 1, i) and (k0 + k1, k2) on
  rows (i, i + 1); the same for columns. 16 multiply-adds per output pixel and channel pair instead of 36,
  and no upsampled copy of the input. Zero padding agrees: upsampled row -1 (or 2H) and low-resolution
  row -1 (or H) are both zero.
* ``AntiAliasInterpolation2d`` (Gaussian blur, then every n-th pixel) as two matrix products with the
  separable Gaussian: the blur is evaluated only where it is kept (1 / n^2 of the pixels), in 2 k taps
  per pixel instead of k^2.
* the dense motion network's occlusion head: extraction never reads the occlusion map.
* ``DownBlock2d``'s convolution with its BN folded in, and the 7 x 7 heads (keypoint heatmaps, dense
  motion mask), computed by NNPACK on a CPU where it is measured faster than oneDNN (:class:`FastConv2d`):
  Winograd F(6 x 6, 3 x 3) for the 3 x 3 convolutions of maps of at least 16 x 16 with at least 64 input
  channels (1.2-1.3x; slower on smaller maps or narrower inputs), FFT for the 7 x 7 heads (2.5-3.8x).
  Both are exact algorithms; in float32 they differ from the direct convolution by about 1e-5 of the
  output's scale (oneDNN's own rounding: 3e-7).

Eval mode only (BN folding uses the running statistics). Hourglass decoders of the paper architecture
(vox-256) hold every up-convolution of the learner, about 60 % of its arithmetic.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

#: For output phase p (0, 1): which rows of the 3 x 3 kernel act on low-resolution rows (i - 1 + p, i + p).
PHASE_TAPS = (((0,), (1, 2)), ((0, 1), (2,)))
#: Relative tolerance of the probe check of a rewritten block (float32 rounding is ~1e-7, NNPACK's ~1e-5).
PROBE_RTOL = 1e-4
#: Smallest map (pixels) and input width whose 3 x 3 convolution runs on NNPACK (Winograd); the 7 x 7 heads
#: always do. Measured against the frozen oneDNN convolution (one thread, CPU time): 1.2-1.3x faster from 64
#: input channels at 16 x 16 and 32 x 32; 6x slower for 3 channels and 1.4x slower for 44 at 64 x 64.
NNPACK_MIN_PIXELS_3X3 = 16 * 16
NNPACK_MIN_CHANNELS_3X3 = 64


def phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """3 x 3 kernels [Cout, Cin, 3, 3] of a conv after nearest x2 upsampling -> the four 2 x 2 kernels
    [4, Cout, Cin, 2, 2] (phase index 2 p + q) acting on the low-resolution input."""
    if tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"expected 3 x 3 kernels, got {tuple(weight.shape)}")
    taps = torch.zeros(2, 2, 3, dtype=weight.dtype, device=weight.device)  # [phase, tap, kernel row]: 0 / 1
    for p in range(2):
        for a in range(2):
            taps[p, a, list(PHASE_TAPS[p][a])] = 1
    kernels = torch.einsum("par,qbc,oirc->pqoiab", taps, taps, weight.detach())  # one pass over the weights
    return kernels.reshape(4, *weight.shape[:2], 2, 2)


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of conv followed by eval-mode BN as one convolution."""
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(norm.running_mean)
    return conv.weight.detach() * scale[:, None, None, None], (bias - norm.running_mean) * scale + norm.bias.detach()


class PhaseUpBlock2d(nn.Module):
    """``UpBlock2d`` in inference form (see the module docstring): [B, Cin, H, W] -> [B, Cout, 2H, 2W]."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        weight, bias = fold_batch_norm(block.conv, block.norm)
        kernels = phase_kernels(weight)                           # [4, Cout, Cin, 2, 2]
        self.out_features = int(weight.shape[0])
        self.register_buffer("weight", kernels.reshape(-1, *kernels.shape[2:]).contiguous())
        self.register_buffer("bias", bias.repeat(4).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        c = self.out_features
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        if h * w <= 16:  # tiny maps: one exact-size convolution per phase (no wasted border outputs)
            outs = [F.conv2d(F.pad(x, (1 - q, q, 1 - p, p)), weight[(2 * p + q) * c:(2 * p + q + 1) * c],
                             bias[(2 * p + q) * c:(2 * p + q + 1) * c]) for p in range(2) for q in range(2)]
            y = torch.stack(outs, dim=1).view(b, 2, 2, c, h, w)
        else:  # one convolution for all phases on the zero-padded input; phase (p, q) starts at (p, q)
            full = F.conv2d(x, weight, bias, padding=1).view(b, 2, 2, c, h + 1, w + 1)
            y = torch.stack([full[:, p, q, :, p:p + h, q:q + w] for p in range(2) for q in range(2)], dim=1)
            y = y.view(b, 2, 2, c, h, w)
        return F.relu(y.permute(0, 3, 4, 1, 5, 2).reshape(b, c, 2 * h, 2 * w))


def nnpack_available() -> bool:
    """Whether torch has NNPACK (the call also initialises it: its convolutions fail before it)."""
    try:
        return bool(torch._nnpack_available())
    except (AttributeError, RuntimeError):
        return False


class FastConv2d(nn.Module):
    """A stride-1 convolution (and the eval-mode BN after it, folded in) that runs on NNPACK for float32
    CPU maps of at least ``min_pixels`` pixels and as ``F.conv2d`` otherwise (see the module docstring)."""

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d | None = None, *, min_pixels: int = 0) -> None:
        super().__init__()
        if norm is not None:
            weight, bias = fold_batch_norm(conv, norm)
        else:
            weight = conv.weight.detach()
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("bias", bias.contiguous())
        self.padding = [int(p) for p in conv.padding]
        self.min_pixels = int(min_pixels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == self.weight.dtype == torch.float32 \
                and x.shape[-2] * x.shape[-1] >= self.min_pixels:
            return torch._nnpack_spatial_convolution(x.contiguous(), self.weight, self.bias, self.padding, [1, 1])
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=self.padding)


class FoldedDownBlock2d(nn.Module):
    """``DownBlock2d`` (conv, BN, ReLU, 2 x 2 average pooling) with BN folded into a :class:`FastConv2d`."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv = FastConv2d(block.conv, block.norm, min_pixels=NNPACK_MIN_PIXELS_3X3)
        self.pool = block.pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.conv(x), inplace=True))  # a fresh tensor: ReLU in place


class SeparableAntiAlias(nn.Module):
    """``AntiAliasInterpolation2d`` in inference form: its Gaussian is separable, g g^T, and only every
    n-th output is kept, so blur-and-subsample is A X A^T with the banded matrix A [ceil(L / n), L + k - 1]
    whose row i holds g at columns n i .. n i + k - 1 (L: the side, k: the kernel size)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        kernel = block.weight.detach()[0, 0].double()
        self.register_buffer("taps", (kernel.sum(dim=1) / kernel.sum().sqrt()).float())  # g (sums to 1)
        self.pad = (block.ka, block.kb, block.ka, block.kb)
        self.stride = int(block.int_inv_scale)
        self._bands: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def band(self, length: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        length = int(length)  # a traced size is a 0-d tensor: the band is then a constant of the graph
        key = (length, device, dtype)
        if key not in self._bands:
            k = self.taps.numel()
            rows = (length - k) // self.stride + 1
            band = torch.zeros(rows, length, dtype=dtype, device=device)
            for i in range(rows):
                band[i, self.stride * i:self.stride * i + k] = self.taps.to(device=device, dtype=dtype)
            self._bands[key] = band
        return self._bands[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, self.pad)
        rows = self.band(padded.shape[-2], device=x.device, dtype=x.dtype)
        cols = self.band(padded.shape[-1], device=x.device, dtype=x.dtype)
        return rows @ padded @ cols.T


def _probe_input(block: nn.Module, reference: nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    device = next(iter(reference.state_dict().values())).device
    if isinstance(block, PhaseUpBlock2d):  # 4 x 5: the one-convolution path; its 3 x 4 crop: the tiny-map one
        return torch.rand(1, int(reference.conv.in_channels), 4, 5, generator=generator).to(device)
    if isinstance(block, (FastConv2d, FoldedDownBlock2d)):  # NNPACK's path at the block's own map size
        conv = reference.conv if isinstance(block, FoldedDownBlock2d) else reference
        return torch.rand(1, int(conv.in_channels), *block.map_size, generator=generator).to(device)
    channels, side = int(reference.groups), 4 * int(reference.int_inv_scale) + 3
    return torch.rand(2, channels, side, side + 1, generator=generator).to(device)


def _agrees(block: nn.Module, reference: nn.Module) -> bool:
    """The rewritten block computes what the original does, on a probe input (odd sizes, both paths)."""
    x = _probe_input(block, reference)
    with torch.no_grad():
        expected, got = reference(x), block(x)
        if isinstance(block, (PhaseUpBlock2d, FastConv2d, FoldedDownBlock2d)):  # the small-map path too
            small = x[..., :3, :4] if isinstance(block, PhaseUpBlock2d) else x[..., :7, :9]
            expected, got = [torch.cat([a.flatten(), b.flatten()]) for a, b in
                             ((expected, reference(small)), (got, block(small)))]
    if expected.shape != got.shape:
        return False
    return bool((expected - got).abs().max() <= PROBE_RTOL * max(1.0, float(expected.abs().max())))


def _plain_conv(conv: nn.Module, kernel: int) -> bool:
    """A zero-padded, stride-1, undilated, ungrouped ``kernel`` x ``kernel`` convolution."""
    return type(conv) is nn.Conv2d and conv.kernel_size == (kernel, kernel) and conv.stride == (1, 1) \
        and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros" \
        and conv.padding[0] == conv.padding[1] and isinstance(conv.padding[0], int)


def _map_sizes(learner: nn.Module) -> dict[int, tuple[int, int]]:
    """Input map size (h, w) of every ``DownBlock2d`` and 7 x 7 convolution that ``estimate_motion`` runs,
    by module id, from one batch-1 call at the learner's image size (empty without NNPACK)."""
    from selfme.motion.blocks import DownBlock2d

    config = getattr(learner, "config", None) or {}
    if not nnpack_available() or not config.get("image_size") or not hasattr(learner, "estimate_motion"):
        return {}
    sizes: dict[int, tuple[int, int]] = {}

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        sizes.setdefault(id(module), tuple(args[0].shape[-2:]))

    hooks = [m.register_forward_pre_hook(record) for m in learner.modules()
             if type(m) is DownBlock2d or _plain_conv(m, 7)]
    try:
        side = int(config["image_size"])
        device = next(iter(learner.state_dict().values())).device
        frame = torch.zeros(1, int(config.get("num_channels", 3)), side, side, device=device)
        with torch.no_grad():
            learner.estimate_motion(frame, frame)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def _rewrite(child: nn.Module, map_size: tuple[int, int] | None = None) -> nn.Module | None:
    """The inference form of one module, or None when it has none (``map_size``: its input's, if known)."""
    from selfme.motion.blocks import AntiAliasInterpolation2d, DownBlock2d, UpBlock2d

    if map_size is not None:  # NNPACK's blocks, where extraction runs them on maps it is faster for
        new = None
        if type(child) is DownBlock2d and _plain_conv(child.conv, 3) and isinstance(child.norm, nn.BatchNorm2d) \
                and child.norm.track_running_stats and isinstance(child.pool, nn.AvgPool2d) \
                and map_size[0] * map_size[1] >= NNPACK_MIN_PIXELS_3X3 \
                and child.conv.in_channels >= NNPACK_MIN_CHANNELS_3X3:
            new = FoldedDownBlock2d(child)
        elif _plain_conv(child, 7):
            new = FastConv2d(child)
        if new is not None:
            new.map_size = map_size
        return new

    conv = getattr(child, "conv", None)
    if type(child) is UpBlock2d and isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) \
            and conv.padding == (1, 1) and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 \
            and conv.padding_mode == "zeros" and isinstance(child.norm, nn.BatchNorm2d) \
            and child.norm.track_running_stats:
        return PhaseUpBlock2d(child)
    if type(child) is AntiAliasInterpolation2d and child.scale != 1.0:
        kernel = child.weight.detach()
        if bool((kernel == kernel[:1]).all()):  # one Gaussian for every channel (the block's definition)
            return SeparableAntiAlias(child)
    return None


def bf16_convolutions(learner: nn.Module) -> nn.Module:
    """``learner`` (in place) with every convolution's weight and bias in bfloat16, for bf16 autocast
    (``extract.amp: bf16``): autocast casts them only for leaves that require gradients, so an inference
    form would otherwise be cast anew at every call (15 % of its time at the paper architecture). Runs
    under autocast only: its convolutions then take bf16 inputs, and NNPACK (float32) is left out."""
    for module in learner.modules():
        if isinstance(module, (nn.Conv2d, PhaseUpBlock2d, FastConv2d)):
            for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                if name in ("weight", "bias") and tensor is not None and tensor.is_floating_point():
                    tensor.data = tensor.data.to(torch.bfloat16)
    return learner


def inference_learner(learner: nn.Module) -> nn.Module:
    """A copy of ``learner`` (eval mode) with the rewrites of the module docstring; a model without the
    blocks (a stand-in learner) comes back as it was, the same object."""
    from selfme.motion.dense_motion import DenseMotionNetwork

    if not any(isinstance(m, DenseMotionNetwork) or _rewrite(m) is not None for m in learner.modules()):
        return learner
    fast = copy.deepcopy(learner).eval()
    sizes = _map_sizes(fast)
    replaced = kept = 0
    for module in list(fast.modules()):
        if isinstance(module, DenseMotionNetwork) and module.occlusion is not None:
            module.occlusion = None
        for name, child in list(module.named_children()):
            new = _rewrite(child, sizes.get(id(child)))
            if new is None:
                continue
            if _agrees(new, child):
                setattr(module, name, new)
                replaced += 1
            else:
                kept += 1
    if kept:
        log.warning("motion learner: %d block(s) kept as trained (their inference form disagreed with them)", kept)
    log.debug("motion learner: %d block(s) in inference form", replaced)
    return fast
