"""Onset -> apex motion of a batch of clips, for every method, in one convention.

The stored convention is OpenCV's forward flow onset -> apex: onset(x) ~= apex(x + F(x)), in pixels of the
crop. The classical methods produce it directly (``calcOpticalFlow*(onset, apex)``). The learner does not:
its dense motion is *backward* (First Order Motion Model): with source S and target T it returns d on the
H/4 lattice with T(p) ~= S(p + d(p)), i.e. the map psi = id + d takes target coordinates to source ones.

SelfME's chain (Sec. 3.2, Eq. 2 and 9): gamma scales the keypoint displacements (Eq. 2), the lattice d is
expanded by the cubic B-spline (Eq. 9) to the full-resolution velocity v, and scaling and squaring gives
the diffeomorphism psi = exp(v). Then

* source = onset (default, the paper's reading: the onset frame is animated into the apex): psi maps apex
  to onset coordinates, so the forward field is its inverse, exp(-v) (exact for a stationary velocity
  field); with ``bspline: false`` (bilinear upsampling, no exponentiation) the inverse of id + v is taken
  by fixed-point iteration;
* source = apex: psi already maps onset to apex coordinates; F = exp(v) (or v).

"Folding before" is measured on id + v (the expanded field taken as a displacement, what the generator
warps with), "folding after" on the stored field.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from selfme.device import autocast, resolve_device
from selfme.bspline import (bilinear_expand, bspline_expand, folding_fraction, invert_displacement,
                            lattice_spacing, scaling_and_squaring)
from selfme.cache import sha256_hex
from selfme.extract.config import ExtractConfig
from selfme.extract.frozen import MotionField, freeze_motion_field
from selfme.extract.inference import bf16_convolutions, inference_learner
from selfme.extract.refine import grey_frames, refine_velocity
from selfme.flow.classic import classical_flow
from selfme.io import file_sha256

log = logging.getLogger(__name__)

#: How the engine runs the learner: ``plain`` as trained (``estimate_motion``), ``eager`` its inference form
#: (selfme.extract.inference), ``frozen`` that form as frozen TorchScript graphs on a CPU (selfme.extract.frozen;
#: eager on other devices). All three give the same motion up to float rounding; ``frozen`` is the fastest
#: in float32. With ``extract.amp: bf16`` the networks run under bf16 autocast, and ``frozen`` runs ``eager``
#: (a float32 trace would ignore the autocast).
LEARNER_FORMS = ("plain", "eager", "frozen")


@dataclass
class PairMotion:
    """One clip's result: forward flow float32 [H, W, 2] (gamma applied), folding fractions, seconds."""

    flow: np.ndarray
    folding_raw: float
    folding: float
    seconds: float
    flow_gamma1: np.ndarray | None = None  # the learner at gamma 1 (for accuracy figures), if asked


def learned_velocity(displacement: torch.Tensor, *, image_size: int, bspline: bool) -> torch.Tensor:
    """Learner lattice [B, 2, h, w] (backward, pixels of the learner input) -> velocity [B, 2, S, S]
    (Eq. 9's cubic B-spline, or bilinear upsampling without ``bspline``)."""
    s = lattice_spacing(displacement.shape[-1], image_size)
    disp = displacement.float()
    return bspline_expand(disp, s) if bspline else bilinear_expand(disp, s)


def velocity_to_forward(velocity: torch.Tensor, *, bspline: bool, ss_steps: int, source_frame: str) -> torch.Tensor:
    """Velocity [B, 2, S, S] -> the stored forward field onset -> apex (the module docstring)."""
    if bspline and ss_steps > 0:
        return scaling_and_squaring(-velocity if source_frame == "onset" else velocity, ss_steps)
    return invert_displacement(velocity) if source_frame == "onset" else velocity


def expand_learned(displacement: torch.Tensor, *, image_size: int, bspline: bool, ss_steps: int,
                   source_frame: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Learner lattice [B, 2, h, w] (backward, pixels of the learner input) -> (forward field [B, 2, S, S],
    folding before, folding after) following the module docstring."""
    velocity = learned_velocity(displacement, image_size=image_size, bspline=bspline)
    forward = velocity_to_forward(velocity, bspline=bspline, ss_steps=ss_steps, source_frame=source_frame)
    return forward, folding_fraction(velocity), folding_fraction(forward)


def resize_field(field: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A pixel displacement field [B, 2, h, w] resized (bilinear) to [B, 2, H, W], values rescaled to H x W pixels."""
    if tuple(field.shape[-2:]) == tuple(size):
        return field
    h, w = size
    scale = torch.tensor([w / field.shape[-1], h / field.shape[-2]], device=field.device)
    return F.interpolate(field, size=size, mode="bilinear", align_corners=False) * scale.view(1, 2, 1, 1)


def learner_in_form(learner: torch.nn.Module, form: str, amp: str) -> torch.nn.Module:
    """The learner as the engine runs it (eval mode): ``plain`` itself; otherwise its inference form, a copy,
    with bf16 convolution weights under ``amp`` bf16 (selfme.extract.inference)."""
    learner = learner.eval()
    if form == "plain":
        return learner
    fast = inference_learner(learner)  # a copy (the learner itself when it has no blocks to rewrite)
    if amp == "bf16":
        fast = bf16_convolutions(copy.deepcopy(fast) if fast is learner else fast)
    return fast


class MotionEngine:
    """Computes :class:`PairMotion` for batches of (onset, apex) uint8 frames with one configuration."""

    def __init__(self, config: ExtractConfig, *, model_path: str | os.PathLike | None = None,
                 learner: torch.nn.Module | None = None, form: str = "frozen") -> None:
        if form not in LEARNER_FORMS:
            raise ValueError(f"learner form must be one of {LEARNER_FORMS}, got {form!r}")
        self.config = config
        self.device = resolve_device(config.device, key="extract.device")
        self.learner = None
        self.field: MotionField | None = None
        self.model_checksum: str | None = None
        if config.method == "selfme":
            if learner is None:
                if model_path is None:
                    raise ValueError("motion.method selfme needs the motion model (models/motion/finetune.pt)")
                from selfme.motion.model import load_motion_model

                learner = load_motion_model(model_path, map_location=self.device)
                self.model_checksum = file_sha256(model_path)
            else:
                self.model_checksum = sha256_hex(
                    chunk for name, tensor in sorted(learner.state_dict().items())
                    for chunk in (name, tensor.detach().cpu().numpy().tobytes()))
            self.learner = learner_in_form(learner, form, config.amp).to(self.device)
            self.image_size = int(self.learner.config["image_size"])
            self.field = MotionField(self.learner)
            if form == "frozen" and config.amp == "none":
                self.field = freeze_motion_field(self.field, image_size=self.image_size, device=self.device)
        log.info("motion %s on %s%s", config.method, self.device,
                 f", model {str(model_path)!r}" if model_path else "")

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def _learned(self, source: torch.Tensor, target: torch.Tensor, gamma: float, out_size: tuple[int, int],
                 keypoints: tuple[torch.Tensor, ...] | None,
                 correction: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(forward field at ``out_size``, folding before, after); with refinement's gamma-1 ``correction``
        [B, 2, H, W] (crop pixels) the velocity is resized to the crop, plus gamma * correction, and
        exponentiated there."""
        c = self.config
        with autocast(c.amp, self.device):
            displacement = self.field.displacement(source, target, gamma, keypoints)
        if correction is not None:
            velocity = gamma * correction
            if c.refine_params.init == "learned":
                velocity = velocity + resize_field(
                    learned_velocity(displacement, image_size=self.image_size, bspline=c.bspline), out_size)
            forward = velocity_to_forward(velocity, bspline=c.bspline, ss_steps=c.ss_steps,
                                          source_frame=c.source_frame)
            return forward, folding_fraction(velocity), folding_fraction(forward)
        forward, raw_fold, fold = expand_learned(displacement, image_size=self.image_size, bspline=c.bspline,
                                                 ss_steps=c.ss_steps, source_frame=c.source_frame)
        if tuple(forward.shape[-2:]) != tuple(out_size):
            forward = resize_field(forward, out_size)
            fold = folding_fraction(forward)
        return forward, raw_fold, fold

    def _correction(self, source: torch.Tensor, target: torch.Tensor, frames: tuple[list, list],
                    out_size: tuple[int, int], keypoints: tuple[torch.Tensor, ...] | None) -> torch.Tensor | None:
        """Refinement's correction of the gamma-1 velocity at the crop size (selfme.extract.refine), or None
        when ``extract.refine.steps`` is 0. ``frames``: the learner's (source, target) uint8 crops."""
        c, params = self.config, self.config.refine_params
        if not params.steps:
            return None
        if params.init == "zero":  # the ablation: no learner at all
            velocity = torch.zeros(source.shape[0], 2, *out_size, device=self.device)
        else:
            with torch.inference_mode(), autocast(c.amp, self.device):
                displacement = self.field.displacement(source, target, 1.0, keypoints)
            with torch.inference_mode():
                velocity = resize_field(learned_velocity(displacement, image_size=self.image_size,
                                                         bspline=c.bspline), out_size)
        images = [grey_frames(f, params.sigma).to(self.device) for f in frames]
        return refine_velocity(velocity.clone(), *images, params, ss_steps=c.ss_steps if c.bspline else 0,
                               expand=bspline_expand if c.bspline else bilinear_expand)

    def compute(self, onsets: Sequence[np.ndarray], apexes: Sequence[np.ndarray], *,
                with_gamma1: bool = False) -> list[PairMotion]:
        """uint8 frames (RGB [H, W, 3] or grey [H, W], all the same size) -> one PairMotion per pair.

        ``with_gamma1`` also runs the learner at gamma 1 (only when gamma != 1; not timed)."""
        c = self.config
        size = onsets[0].shape[:2]
        if c.method != "selfme":
            self._sync()
            tic = time.perf_counter()
            flows = classical_flow(c.method, onsets, apexes, getattr(c, c.method), device=self.device,
                                   size=c.flow_size or None)
            seconds = (time.perf_counter() - tic) / len(flows)
            folds = folding_fraction(torch.from_numpy(flows).permute(0, 3, 1, 2)).tolist()
            return [PairMotion(flow=f, folding_raw=fd, folding=fd, seconds=seconds) for f, fd in zip(flows, folds)]
        if size[0] != size[1]:
            raise ValueError(f"the motion learner needs square crops, got {size[1]}x{size[0]}")
        from selfme.motion.preprocess import to_tensor

        src = torch.stack([to_tensor(a, self.image_size) for a in onsets]).to(self.device)
        dst = torch.stack([to_tensor(a, self.image_size) for a in apexes]).to(self.device)
        source, target = (src, dst) if c.source_frame == "onset" else (dst, src)
        self._sync()
        tic = time.perf_counter()
        with torch.inference_mode(), autocast(c.amp, self.device):
            keypoints = self.field.keypoints(source, target)  # shared with the gamma 1 pass
        frames = (list(onsets), list(apexes)) if c.source_frame == "onset" else (list(apexes), list(onsets))
        correction = self._correction(source, target, frames, size, keypoints)
        forward, raw_fold, fold = self._learned(source, target, float(c.gamma), size, keypoints, correction)
        self._sync()
        seconds = (time.perf_counter() - tic) / len(onsets)
        gamma1 = None
        if with_gamma1 and float(c.gamma) != 1.0:
            gamma1 = self._learned(source, target, 1.0, size, keypoints, correction)[0]
            gamma1 = gamma1.permute(0, 2, 3, 1).float().cpu().numpy()
        flows = forward.permute(0, 2, 3, 1).float().cpu().numpy()
        return [PairMotion(flow=flows[i], folding_raw=float(raw_fold[i]), folding=float(fold[i]), seconds=seconds,
                           flow_gamma1=None if gamma1 is None else gamma1[i]) for i in range(len(onsets))]

