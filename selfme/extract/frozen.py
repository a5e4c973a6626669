"""What extraction asks of the motion learner, and that part frozen into TorchScript graphs on a CPU.

Extraction needs one thing from the learner: the dense motion's displacement on the H/4 lattice
(Eq. 2-5), i.e. ``estimate_motion(source, target, gamma)["displacement"]``. :class:`MotionField` computes
exactly that from the learner's own modules, in two parts:

* ``keypoints``: the keypoint detector (Eq. 1) on the source and the target frames as one batch (the
  detector sees every frame alone, so one batch of 2B frames gives the same keypoints as two of B, with
  the layers' weights read once instead of twice);
* ``displacement``: the dense motion network for a gamma (Eq. 2 scales the keypoint displacements), so a
  second gamma (the accuracy pass at gamma 1) reuses the keypoints instead of detecting them again.

A learner without these modules (a stand-in with only ``estimate_motion``) is called as it is.

On a CPU, :func:`freeze_motion_field` traces both parts with ``torch.jit.trace`` and passes them through
``torch.jit.freeze`` and ``torch.jit.optimize_for_inference``: BN folded into the convolutions, the
weights packed once into oneDNN's blocked layout instead of being reordered at every call, activations
kept in that layout from one convolution to the next. Gamma is an input of the graph (not a constant of
the trace). The frozen parts are checked against the eager ones on a probe (another batch size and
another gamma than they were traced with) and left out, with a warning, when tracing fails or they
disagree beyond float rounding.
"""

from __future__ import annotations

import logging
import time
import warnings

import torch
from torch import nn

log = logging.getLogger(__name__)

#: Largest difference, in pixels per pixel of max(1, |displacement|), of the frozen from the eager motion
#: on the probe (float32 rounding through the hourglasses and the heatmap softmax: ~1e-4 of 0.3 px at
#: the paper architecture; a wrong graph is off by the motion itself).
PROBE_TOLERANCE = 1e-3
#: Batch sizes (pairs) of the trace and of the probe: different, so a batch size baked into the graph shows.
TRACE_PAIRS, PROBE_PAIRS = 2, 1
#: Gammas of the trace and of the probe: different, so a gamma baked into the graph shows.
TRACE_GAMMA, PROBE_GAMMA = 1.0, 2.0


class PairKeypoints(nn.Module):
    """Frames [N, C, H, W] -> (keypoints [N, K, 2],) or, with the Jacobian head, (keypoints, J [N, K, 2, 2])."""

    def __init__(self, kp_detector: nn.Module) -> None:
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        keypoints, jacobian = self.kp_detector.detect(frames)
        return (keypoints,) if jacobian is None else (keypoints, jacobian)


class DenseDisplacement(nn.Module):
    """(source, target, source and target keypoints, gamma [0-d tensor], Jacobians or nothing) ->
    displacement [B, 2, h, w], the dense motion network's Eq. 5 in pixels (the target frame is used by
    ``residual_flow`` only)."""

    def __init__(self, dense_motion_network: nn.Module) -> None:
        super().__init__()
        self.dense_motion_network = dense_motion_network

    def forward(self, source: torch.Tensor, target: torch.Tensor, kp_source: torch.Tensor, kp_target: torch.Tensor,
                gamma: torch.Tensor, jacobian_source: torch.Tensor | None = None,
                jacobian_target: torch.Tensor | None = None) -> torch.Tensor:
        return self.dense_motion_network(source, kp_source=kp_source, kp_target=kp_target, gamma=gamma,
                                         jacobian_source=jacobian_source, jacobian_target=jacobian_target,
                                         target=target)["displacement"]


class MotionField:
    """The learner's lattice displacement (see the module docstring); ``frozen`` says whether the parts
    are TorchScript graphs."""

    def __init__(self, learner: nn.Module) -> None:
        self.learner = learner
        detector = getattr(learner, "kp_detector", None)
        dense = getattr(getattr(learner, "generator", None), "dense_motion_network", None)
        self.modular = detector is not None and dense is not None
        self.keypoint_part = PairKeypoints(detector).eval() if self.modular else None
        self.dense_part = DenseDisplacement(dense).eval() if self.modular else None
        self.frozen = False

    def keypoints(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """(kp_source, kp_target[, J_source, J_target]) of [B, C, H, W] frame batches; None for a stand-in."""
        if not self.modular:
            return None
        b = source.shape[0]
        return tuple(part for out in self.keypoint_part(torch.cat([source, target])) for part in (out[:b], out[b:]))

    def displacement(self, source: torch.Tensor, target: torch.Tensor, gamma: float,
                     keypoints: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """Backward lattice displacement [B, 2, h, w] in pixels (target(p) ~= source(p + d(p)))."""
        if not self.modular:
            return self.learner.estimate_motion(source, target, gamma=gamma)["displacement"]
        kp = keypoints if keypoints is not None else self.keypoints(source, target)
        gamma_t = torch.tensor(float(gamma), dtype=source.dtype, device=source.device)
        return self.dense_part(source, target, kp[0], kp[1], gamma_t, *kp[2:])


def _freeze(module: nn.Module, example: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python-side shape checks
        traced = torch.jit.trace(module.eval(), example, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


def _probe_error(eager: MotionField, frozen: MotionField, frames: torch.Tensor) -> float:
    """Largest |frozen - eager| displacement on the probe pairs, per max(1, |eager|)."""
    source, target = frames[:PROBE_PAIRS], frames[PROBE_PAIRS:2 * PROBE_PAIRS]
    expected = eager.displacement(source, target, PROBE_GAMMA)
    got = frozen.displacement(source, target, PROBE_GAMMA)
    if got.shape != expected.shape:
        return float("inf")
    return float((got - expected).abs().max()) / max(1.0, float(expected.abs().max()))


def freeze_motion_field(field: MotionField, *, image_size: int, device: torch.device) -> MotionField:
    """``field`` with both parts as frozen TorchScript graphs (see the module docstring), or ``field``
    itself where it has no parts, is not on a CPU, or the frozen graphs fail or disagree."""
    if not field.modular or device.type != "cpu":
        return field
    tic = time.perf_counter()
    channels = int(getattr(field.learner, "config", {}).get("num_channels", 3))
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(2 * TRACE_PAIRS, channels, image_size, image_size, generator=generator).to(device)
    frozen = MotionField(field.learner)
    try:
        with torch.no_grad():
            # One eager run first: what the blocks cache per input size (band matrices) is then a constant of
            # the trace instead of being rebuilt inside the graph at every call.
            kp = field.keypoints(frames[:TRACE_PAIRS], frames[TRACE_PAIRS:])
            gamma = torch.tensor(TRACE_GAMMA, dtype=frames.dtype, device=device)
            example = (frames[:TRACE_PAIRS], frames[TRACE_PAIRS:], kp[0], kp[1], gamma, *kp[2:])
            field.dense_part(*example)
            frozen.keypoint_part = _freeze(field.keypoint_part, (frames,))
            frozen.dense_part = _freeze(field.dense_part, example)
            frozen.displacement(frames[:TRACE_PAIRS], frames[TRACE_PAIRS:], TRACE_GAMMA)  # the executor's first run
            error = _probe_error(field, frozen, frames)
    except Exception as exc:  # noqa: BLE001 (any tracing or freezing failure: the eager form still works)
        log.warning("motion learner: no frozen graph (%s: %s); extraction runs it eagerly", type(exc).__name__, exc)
        return field
    if not error <= PROBE_TOLERANCE:
        log.warning("motion learner: its frozen graph disagrees with it on the probe (%.2g px per px); "
                    "extraction runs it eagerly", error)
        return field
    frozen.frozen = True
    log.debug("motion learner frozen in %.1f s (probe difference %.2g)", time.perf_counter() - tic, error)
    return frozen
