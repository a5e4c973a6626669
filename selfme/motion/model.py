"""The self-supervised motion learner (Sec. 3.2): F_kp + F_dense + generator, trained by reconstruction.

``MotionLearner(source, target)`` detects keypoints in both frames (Eq. 1), builds the zeroth-order dense
motion (Eq. 2-5), reconstructs the target from the source and returns the losses of Eq. 6-8. The saved
model file (stage output) holds the two networks' state dicts and the architecture config, so
``load_motion_model`` rebuilds it without params.yaml.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from selfme.config import ParamsError, as_dict, from_mapping
from selfme.io import write_torch
from selfme.motion.config import LossConfig, MotionConfig
from selfme.motion.generator import OcclusionAwareGenerator
from selfme.motion.keypoint_detector import KPDetector
from selfme.motion.losses import PerceptualLoss, PyramidL1Loss, equivariance_losses
from selfme.motion.transform import ThinPlateSpline

log = logging.getLogger(__name__)

MODEL_FORMAT = "selfme-motion-model/1"
#: First Order Motion Model's vox-256 architecture (the paper's learner): the ``motion`` section's keys.
PAPER_ARCHITECTURE: dict[str, Any] = {
    "image_size": 256, "num_kp": 10, "num_channels": 3,
    "kp_detector": {"block_expansion": 32, "max_features": 1024, "num_blocks": 5, "temperature": 0.1,
                    "scale_factor": 0.25, "pad": 0, "estimate_jacobian": False},
    "dense_motion": {"block_expansion": 64, "max_features": 1024, "num_blocks": 5, "scale_factor": 0.25,
                     "kp_variance": 0.01},
    "generator": {"block_expansion": 64, "max_features": 512, "num_down_blocks": 2, "num_bottleneck_blocks": 6,
                  "estimate_occlusion_map": True, "image_skip": False},
}
#: Eq. 8's weights and the losses' settings (:class:`selfme.motion.config.LossConfig`). ``pixel`` (a departure,
#: default 0): weight of the same pyramid in pixel space (:class:`selfme.motion.losses.PyramidL1Loss`); with
#: ``perceptual: 0`` no VGG is built. ``warp`` (a departure, default 0): weight of that pixel pyramid between
#: the source warped by the dense motion alone (the generator's ``deformed``) and the target, so that the
#: motion, not the generator's decoder, has to explain the change. ``equivariance_jacobian``: FOMM's Jacobian equivariance weight.
LOSS_DEFAULTS: dict[str, Any] = as_dict(LossConfig())


def model_config(motion: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture part of params.yaml's ``motion`` section, checked (:class:`MotionConfig`: unknown
    keys, types, the divisibility of the hourglasses' inputs), as plain dicts; an omitted optional key
    (``generator.image_skip``, ``kp_detector.estimate_jacobian``) is filled with its default."""
    return MotionConfig.from_mapping(motion).architecture()


def same_architecture(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two architecture configs build the same networks (an omitted optional key equals its default)."""
    try:
        return model_config(a) == model_config(b)
    except ParamsError:  # e.g. a foreign model file's config
        return False


def loss_config(loss: Mapping[str, Any] | None) -> dict[str, Any]:
    return as_dict(from_mapping(LossConfig, loss, prefix="loss"))


class MotionLearner(nn.Module):
    """Keypoint detector + occlusion-aware generator (with its dense motion network) + losses.

    ``losses=None`` builds the networks only (inference / motion extraction, no VGG).
    """

    def __init__(self, *, config: Mapping[str, Any], losses: Mapping[str, Any] | None = None,
                 vgg: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.config = model_config(config)
        c = self.config
        self.kp_detector = KPDetector(num_kp=c["num_kp"], num_channels=c["num_channels"], **c["kp_detector"])
        self.generator = OcclusionAwareGenerator(num_kp=c["num_kp"], num_channels=c["num_channels"],
                                                 dense_motion_params=c["dense_motion"], **c["generator"])
        self.loss_config = loss_config(losses) if losses is not None else None
        self.perceptual = self.pixel = None
        lc = self.loss_config
        if lc is not None and not (lc["perceptual"] or lc["pixel"]):
            raise ValueError("loss: perceptual and pixel are both 0: no reconstruction loss (Eq. 6)")
        if lc is not None and (lc["pixel"] or lc["warp"]):
            self.pixel = PyramidL1Loss(scales=lc["scales"], num_channels=c["num_channels"])
        if lc is not None and lc["perceptual"]:
            vgg = dict(vgg or {})
            self.perceptual = PerceptualLoss(scales=self.loss_config["scales"],
                                             layer_weights=self.loss_config["layer_weights"],
                                             num_channels=c["num_channels"],
                                             vgg_pretrained=bool(vgg.get("pretrained", True)),
                                             vgg_weights=vgg.get("weights"))
            self.perceptual.check_size(int(c["image_size"]))

    def networks_state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """The trainable part (no VGG): {'kp_detector': ..., 'generator': ...}."""
        return {"kp_detector": self.kp_detector.state_dict(), "generator": self.generator.state_dict()}

    def load_networks_state_dict(self, state: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        self.kp_detector.load_state_dict(state["kp_detector"])
        self.generator.load_state_dict(state["generator"])

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.kp_detector.parameters()) + list(self.generator.parameters())

    def estimate_motion(self, source: torch.Tensor, target: torch.Tensor, *,
                        gamma: float = 1.0) -> dict[str, torch.Tensor]:
        """Keypoints (Eq. 1) and dense motion (Eq. 2-5) from source to target, without reconstruction.

        source, target [B, 3, H, W] in [0, 1] -> kp_source, kp_target [B, K, 2], deformation [B, h, w, 2],
        displacement [B, 2, h, w] (pixels; target(p) ~= source(p + d(p))), mask, occlusion_map.
        """
        kp_source, jac_source = self.kp_detector.detect(source)
        kp_target, jac_target = self.kp_detector.detect(target)
        dense = self.generator.dense_motion_network(source, kp_source=kp_source, kp_target=kp_target, gamma=gamma,
                                                    jacobian_source=jac_source, jacobian_target=jac_target,
                                                    target=target)
        return {"kp_source": kp_source, "kp_target": kp_target, **dense}

    def forward(self, source: torch.Tensor, target: torch.Tensor, *, gamma: float = 1.0,
                rng: torch.Generator | None = None, with_losses: bool = True) -> dict[str, torch.Tensor]:
        """source, target [B, 3, H, W] in [0, 1] -> dict with prediction [B, 3, H, W], kp_source/kp_target
        [B, K, 2], displacement [B, 2, H/4, W/4] and the generator's other maps; with losses also
        loss_perceptual (Eq. 6), loss_pixel, loss_warp, loss_equivariance (Eq. 7; plus FOMM's Jacobian term when the
        detector has Jacobians) and loss (Eq. 8, the weighted sum)."""
        kp_source, jac_source = self.kp_detector.detect(source)  # [B, K, 2], [B, K, 2, 2] | None
        kp_target, jac_target = self.kp_detector.detect(target)
        out = self.generator(source, kp_source=kp_source, kp_target=kp_target, gamma=gamma,
                             jacobian_source=jac_source, jacobian_target=jac_target, target=target)
        out.update(kp_source=kp_source, kp_target=kp_target)
        if not with_losses:
            return out
        if self.loss_config is None:
            raise RuntimeError("this MotionLearner was built without losses (losses=None)")
        lc = self.loss_config
        zero = target.new_zeros((), dtype=torch.float32)
        loss_rec = self.perceptual(out["prediction"], target) if self.perceptual is not None else zero
        loss_pix = self.pixel(out["prediction"], target) if lc["pixel"] else zero
        loss_warp = self.pixel(out["deformed"], target) if lc["warp"] else zero
        loss_eq = loss_eq_jac = zero
        if lc["equivariance"] or (jac_target is not None and lc["equivariance_jacobian"]):
            transform = ThinPlateSpline.random(target.shape[0], sigma_affine=lc["sigma_affine"],
                                               sigma_tps=lc["sigma_tps"], points_tps=lc["points_tps"],
                                               generator=rng, device=target.device)
            loss_eq, jac_term = equivariance_losses(self.kp_detector, target, kp_target, jac_target, transform)
            loss_eq_jac = jac_term if jac_term is not None else zero
        out["loss_perceptual"], out["loss_pixel"], out["loss_equivariance"] = loss_rec, loss_pix, loss_eq
        out["loss_warp"] = loss_warp
        out["loss"] = (lc["perceptual"] * loss_rec + lc["pixel"] * loss_pix + lc["warp"] * loss_warp  # Eq. 8
                       + lc["equivariance"] * loss_eq + lc["equivariance_jacobian"] * loss_eq_jac)
        return out


def save_motion_model(path: str | os.PathLike, model: MotionLearner, *, meta: Mapping[str, Any] | None = None) -> None:
    """Write the stage output atomically: state dicts (CPU tensors), architecture config and metadata."""
    state = {k: {n: t.detach().cpu() for n, t in sd.items()} for k, sd in model.networks_state_dict().items()}
    payload = {"format": MODEL_FORMAT, "config": model.config, "meta": dict(meta or {}), **state}
    write_torch(path, payload)


def load_motion_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> MotionLearner:
    """Rebuild a saved motion learner (networks only, eval mode) for motion extraction."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"motion model not found: {path} (run the pretrain / finetune stage)")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a SelfME motion model (format {payload.get('format')!r})")
    model = MotionLearner(config=payload["config"])
    model.load_networks_state_dict(payload)
    return model.to(map_location).eval()


def load_weights(model: MotionLearner, path: str | os.PathLike) -> dict[str, list[str]]:
    """Initialise the networks from a SelfME model file or a First Order Motion Model checkpoint
    (``vox-cpk.pth.tar``: same module names; its Jacobian head is ignored). Shapes must match."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"initial weights not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") == MODEL_FORMAT and not same_architecture(payload.get("config") or {}, model.config):
        raise ValueError(f"{path} was trained with motion architecture {payload.get('config')}, but params.yaml's "
                         f"motion section gives {model.config}: rerun the pretrain stage or restore the section")
    report: dict[str, list[str]] = {}
    for name, module in (("kp_detector", model.kp_detector), ("generator", model.generator)):
        if name not in payload:
            raise KeyError(f"{path} has no {name!r} state dict")
        keep_jacobian = name == "kp_detector" and model.kp_detector.jacobian is not None
        state = {k: v for k, v in payload[name].items() if keep_jacobian or not k.startswith("jacobian")}
        try:
            result = module.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ValueError(f"{path}: its {name} does not fit the motion architecture: {exc}") from exc
        if result.missing_keys:
            raise ValueError(f"{path}: {name} lacks {result.missing_keys[:5]} (different architecture?)")
        report[name] = list(result.unexpected_keys)
        if result.unexpected_keys:
            log.warning("%s: ignored %d unexpected %s keys, e.g. %s", path, len(result.unexpected_keys), name,
                        result.unexpected_keys[:3])
    return report
