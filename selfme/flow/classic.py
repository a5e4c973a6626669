"""Farneback and DIS flow (OpenCV's main modules) and the dispatch over the classical methods.

Parameters are plain mappings (params.yaml's ``extract.farneback`` / ``extract.dis`` / ``extract.tvl1``);
missing keys take the defaults below (Farneback: the values MER toolkits use with
``cv2.calcOpticalFlowFarneback``; DIS: OpenCV's ``PRESET_MEDIUM``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import cv2
import numpy as np
import torch

from selfme.config import as_dict, from_mapping
from selfme.flow.tvl1 import TVL1Params, tvl1_flow

CLASSICAL_METHODS = ("tvl1", "farneback", "dis")
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


@dataclass(frozen=True, kw_only=True)
class FarnebackParams:
    """``extract.farneback``: cv2.calcOpticalFlowFarneback's arguments (the values MER toolkits use)."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    flags: int = 0


@dataclass(frozen=True, kw_only=True)
class DisParams:
    """``extract.dis``: the DIS preset (one of :data:`DIS_PRESETS`)."""

    preset: Literal["ultrafast", "fast", "medium"] = "medium"


FARNEBACK_DEFAULTS: dict[str, Any] = as_dict(FarnebackParams())
DIS_DEFAULTS: dict[str, Any] = as_dict(DisParams())


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] or grey [H, W] -> uint8 grey [H, W] (ITU-R BT.601 weights, as cv2.cvtColor)."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)


def _checked(values: Mapping[str, Any] | None, cls: type, name: str) -> dict[str, Any]:
    """A flow's parameters over its defaults, checked (:func:`selfme.config.from_mapping`)."""
    return as_dict(from_mapping(cls, values, prefix=name))


def farneback_flow(i0: np.ndarray, i1: np.ndarray, params: Mapping[str, Any] | None = None) -> np.ndarray:
    """Farneback (2003) polynomial-expansion flow, I0 -> I1: float32 [H, W, 2]."""
    p = _checked(params, FarnebackParams, "farneback")
    return cv2.calcOpticalFlowFarneback(to_gray(i0), to_gray(i1), None, float(p["pyr_scale"]), int(p["levels"]),
                                        int(p["winsize"]), int(p["iterations"]), int(p["poly_n"]),
                                        float(p["poly_sigma"]), int(p["flags"]))


def dis_flow(i0: np.ndarray, i1: np.ndarray, params: Mapping[str, Any] | None = None) -> np.ndarray:
    """Dense Inverse Search (Kroeger et al. 2016) flow, I0 -> I1: float32 [H, W, 2]."""
    p = _checked(params, DisParams, "dis")
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[p["preset"]])
    return dis.calc(to_gray(i0), to_gray(i1), None)


def classical_flow(method: str, onsets: Sequence[np.ndarray], apexes: Sequence[np.ndarray],
                   params: Mapping[str, Any] | None = None, *, device: torch.device | str = "cpu",
                   size: int | None = None) -> np.ndarray:
    """Forward flow onset -> apex of a batch of uint8 frames: float32 [B, H, W, 2].

    ``params`` is the method's own parameter mapping. TV-L1 runs batched in torch on ``device``; Farneback
    and DIS run frame pair by frame pair in OpenCV (CPU). ``size``: compute on the frames resized to
    size x size (area interpolation) and return the flow resized back (bilinear), in the frames' pixels.
    """
    if method not in CLASSICAL_METHODS:
        raise ValueError(f"unknown optical-flow method {method!r} (known: {CLASSICAL_METHODS})")
    if size:
        height, width = onsets[0].shape[:2]
        small = classical_flow(method, [cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA) for a in onsets],
                               [cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA) for a in apexes],
                               params, device=device)
        scale = np.array([width / size, height / size], np.float32)
        return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) * scale for f in small])
    gray0 = [to_gray(a) for a in onsets]
    gray1 = [to_gray(a) for a in apexes]
    if method == "tvl1":
        flow = tvl1_flow(np.stack(gray0), np.stack(gray1), TVL1Params.from_mapping(params), device=device)
        return flow.cpu().numpy().astype(np.float32)
    fn = farneback_flow if method == "farneback" else dis_flow
    return np.stack([fn(a, b, params) for a, b in zip(gray0, gray1)]).astype(np.float32)
