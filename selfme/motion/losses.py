"""Losses of the motion learner: multi-scale perceptual reconstruction (Eq. 6) and equivariance (Eq. 7).

The VGG-19 ImageNet weights are torchvision's ``vgg19-dcbb9e9d.pth``; nothing here downloads anything.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from selfme.motion.blocks import AntiAliasInterpolation2d
from selfme.motion.transform import ThinPlateSpline

log = logging.getLogger(__name__)

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
# torchvision's VGG-19 "E" configuration up to relu5_1 (feature indices 0..29).
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# Slices ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (First Order Motion Model's choice).
_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
MIN_VGG_SIDE = 16  # four 2x2 max-pools before relu5_1


def default_vgg19_path() -> Path:
    """Where torchvision caches it: ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def _vgg19_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = int(v)
    return nn.Sequential(*layers)


class Vgg19(nn.Module):
    """Frozen VGG-19 features at relu1_1 .. relu5_1 of an ImageNet-normalised image in [0, 1].

    ``pretrained=True`` loads ``weights`` (default :func:`default_vgg19_path`) and fails with a clear
    message when the file is missing; ``pretrained=False`` is a random (He-initialised) VGG, on purpose.
    """

    def __init__(self, *, pretrained: bool = True, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        features = _vgg19_features()
        if pretrained:
            path = Path(weights) if weights else default_vgg19_path()
            if not path.is_file():
                raise FileNotFoundError(
                    f"VGG-19 ImageNet weights not found: {path}. Put torchvision's {VGG19_FILE} ({VGG19_URL}) "
                    f"in {default_vgg19_path().parent} (that is $TORCH_HOME/hub/checkpoints/), or set the "
                    f"stage's vgg.weights to the file's path, or set vgg.pretrained: false to train with a "
                    f"randomly initialised VGG on purpose.")
            state = torch.load(path, map_location="cpu", weights_only=True)
            prefix = "features."
            state = {k[len(prefix):]: v for k, v in state.items()
                     if k.startswith(prefix) and int(k[len(prefix):].split(".")[0]) < len(features)}
            features.load_state_dict(state, strict=True)
            log.info("perceptual loss: VGG-19 ImageNet weights from %s", path)
        else:
            for m in features.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
            log.warning("perceptual loss: VGG-19 is RANDOMLY initialised (vgg.pretrained: false); "
                        "reconstructions will be blurrier than with ImageNet weights")
        self.slices = nn.ModuleList(features[a:b] for a, b in _SLICES)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Vgg19":
        return super().train(False)  # always frozen

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        feats = []
        for block in self.slices:
            out = block(out)
            feats.append(out)
        return feats  # 5 maps: [B, 64, H, W], [B, 128, H/2, W/2], ..., [B, 512, H/16, W/16]


class ImagePyramid(nn.Module):
    """Anti-aliased image pyramid: [B, C, H, W] -> {scale: [B, C, H*scale, W*scale]}."""

    def __init__(self, scales: Sequence[float], num_channels: int = 3) -> None:
        super().__init__()
        self.scales = [float(s) for s in scales]
        self.downs = nn.ModuleList(AntiAliasInterpolation2d(num_channels, s) for s in self.scales)

    def forward(self, x: torch.Tensor) -> dict[float, torch.Tensor]:
        return {s: down(x) for s, down in zip(self.scales, self.downs)}


class PerceptualLoss(nn.Module):
    """Eq. 6: sum over pyramid scales s and VGG layers i of w_i * mean |VGG_i(D_s(x_hat)) - VGG_i(D_s(x))|."""

    def __init__(self, *, scales: Sequence[float] = (1, 0.5, 0.25, 0.125),
                 layer_weights: Sequence[float] = (1, 1, 1, 1, 1), num_channels: int = 3,
                 vgg_pretrained: bool = True, vgg_weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        if len(layer_weights) != len(_SLICES):
            raise ValueError(f"layer_weights needs {len(_SLICES)} values (relu1_1..relu5_1), got {layer_weights}")
        self.pyramid = ImagePyramid(scales, num_channels)
        self.layer_weights = [float(w) for w in layer_weights]
        self.vgg = Vgg19(pretrained=vgg_pretrained, weights=vgg_weights)

    def check_size(self, size: int) -> None:
        smallest = min(self.pyramid.scales) * size
        if smallest < MIN_VGG_SIDE:
            raise ValueError(f"the smallest pyramid level is {smallest:g} px but VGG-19 up to relu5_1 needs at "
                             f"least {MIN_VGG_SIDE}: drop scales below {MIN_VGG_SIDE / size:g} for {size}px images")

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.check_size(min(prediction.shape[-2:]))
        pred_pyr, target_pyr = self.pyramid(prediction), self.pyramid(target)
        total = prediction.new_zeros((), dtype=torch.float32)
        for s in self.pyramid.scales:
            pred_feats = self.vgg(pred_pyr[s])
            with torch.no_grad():
                target_feats = self.vgg(target_pyr[s])
            for w, p, t in zip(self.layer_weights, pred_feats, target_feats):
                if w:
                    total = total + w * (p.float() - t.float()).abs().mean()
        return total


class PyramidL1Loss(nn.Module):
    """Eq. 6 in pixel space: sum over pyramid scales s of mean |D_s(x_hat) - D_s(x)| (no VGG).

    A departure from the paper (``loss.pixel``, default 0): on a CPU without ImageNet weights the
    perceptual loss runs on a random VGG, whose features cost two thirds of a demo training step and
    carry no more of a one-pixel expression than the pixels do (docs/motion_learning.md).
    """

    def __init__(self, *, scales: Sequence[float] = (1, 0.5, 0.25, 0.125), num_channels: int = 3) -> None:
        super().__init__()
        self.pyramid = ImagePyramid(scales, num_channels)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred_pyr, target_pyr = self.pyramid(prediction.float()), self.pyramid(target.float())
        return sum((pred_pyr[s] - target_pyr[s]).abs().mean() for s in self.pyramid.scales)


def equivariance_loss(kp_detector: nn.Module, frame: torch.Tensor, keypoints: torch.Tensor,
                      transform: ThinPlateSpline) -> torch.Tensor:
    """Eq. 7: mean |z - T(F_kp(T(frame)))| for the keypoints z = F_kp(frame) and a known TPS transform T.

    ``transform.transform_frame`` resamples the frame at T(p), so keypoints detected in it map back to the
    frame's coordinates through T; the loss is zero when F_kp is equivariant.
    """
    return equivariance_losses(kp_detector, frame, keypoints, None, transform)[0]


def equivariance_losses(kp_detector: nn.Module, frame: torch.Tensor, keypoints: torch.Tensor,
                        jacobians: torch.Tensor | None,
                        transform: ThinPlateSpline) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eq. 7 for the keypoints and, with Jacobians J = F_kp's [B, K, 2, 2], First Order Motion Model's
    Jacobian equivariance mean |I - J^-1 (dT(z') J')| (z', J' detected in the transformed frame; the
    Jacobian term is None without Jacobians)."""
    transformed = transform.transform_frame(frame)  # [B, C, H, W]
    kp_transformed, jac_transformed = kp_detector.detect(transformed)  # [B, K, 2], [B, K, 2, 2] | None
    value = (keypoints.float() - transform.warp_coordinates(kp_transformed.float())).abs().mean()
    if jacobians is None or jac_transformed is None:
        return value, None
    mapped = torch.matmul(transform.jacobian(kp_transformed.float()), jac_transformed.float())
    product = torch.matmul(torch.inverse(jacobians.float()), mapped)
    eye = torch.eye(2, dtype=product.dtype, device=product.device)
    return value, (eye - product).abs().mean()
