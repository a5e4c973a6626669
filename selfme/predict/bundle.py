"""The model bundle: everything ``selfme predict`` needs to classify a new clip, in one file.

``models/bundle/<dataset>.pt`` (written by the train_full stage) holds the motion learner's weights and
architecture, the classifier's weights and ``scvit`` settings, the ``crop`` and ``extract`` parameters,
``motion.method``, the class names, the selfme version that wrote it and the bundle format version.
Only tensors, dicts, lists, strings, numbers, booleans and None are stored, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs). A bundle of another format version is
refused with an error naming both versions, and one with a NaN or infinite weight (a corrupted file, or
a training run that diverged) with an error naming the file and the tensor: it would predict NaN.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from selfme import __version__
from selfme.extract.config import ExtractConfig
from selfme.face.config import CropConfig
from selfme.io import write_torch
from selfme.scvit.factory import SCViTConfig, create_scvit
from selfme.scvit.model import SCViT

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "selfme-bundle"
#: Bumped whenever the bundle's layout or meaning changes; other versions are refused on load.
BUNDLE_VERSION = 1
DEFAULT_BUNDLE = "models/bundle/synthme.pt"
#: Keys every bundle has (checked on load, so a hand-edited file fails clearly, not half-way).
REQUIRED_KEYS = ("format", "format_version", "selfme_version", "dataset", "protocol", "class_names", "crop",
                 "extract", "motion_method", "motion_model", "scvit", "classifier", "in_chans", "training")


def plain_tree(value: Any) -> Any:
    """A copy of ``value`` made of dicts, lists, str, int, float, bool, None and CPU tensors only
    (tuples become lists), which is what ``torch.load(weights_only=True)`` accepts without surprises."""
    if isinstance(value, Mapping):
        return {str(k): plain_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_tree(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in a model bundle")


def non_finite_tensors(tree: Any, prefix: str = "") -> list[str]:
    """Names (``a.b.c``) of the floating-point tensors in ``tree`` that hold a NaN or an infinity."""
    if isinstance(tree, Mapping):
        return [n for k, v in tree.items() for n in non_finite_tensors(v, f"{prefix}{k}.")]
    if isinstance(tree, (list, tuple)):
        return [n for i, v in enumerate(tree) for n in non_finite_tensors(v, f"{prefix}{i}.")]
    if isinstance(tree, torch.Tensor) and tree.is_floating_point() and not bool(torch.isfinite(tree).all()):
        return [prefix.rstrip(".")]
    return []


def make_bundle(*, dataset: str, protocol: str, class_names: list[str] | tuple[str, ...], crop: Mapping[str, Any],
                extract: Mapping[str, Any], motion_method: str, motion_model: Mapping[str, Any] | None,
                scvit: Mapping[str, Any], classifier: SCViT, training: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle payload; the parameter sections are validated the way predict will read them."""
    CropConfig.from_mapping(dict(crop))
    ExtractConfig.from_mapping(dict(extract), method=motion_method)
    SCViTConfig.from_mapping(dict(scvit))
    if motion_method == "selfme" and motion_model is None:
        raise ValueError("motion.method selfme needs the motion learner's weights in the bundle")
    if classifier.num_classes != len(class_names):
        raise ValueError(f"the classifier has {classifier.num_classes} outputs for {len(class_names)} classes")
    return plain_tree({
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "selfme_version": __version__,
        "dataset": dataset, "protocol": protocol, "class_names": list(class_names),
        "crop": dict(crop), "extract": dict(extract), "motion_method": motion_method,
        "motion_model": dict(motion_model) if motion_model is not None else None,
        "scvit": dict(scvit), "classifier": classifier.state_dict(), "in_chans": classifier.in_chans,
        "training": dict(training)})


def save_bundle(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write the bundle atomically (a reader never sees a half-written file)."""
    path = Path(path)
    write_torch(path, dict(payload))
    return path


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: the payload plus builders for the configs and networks it describes."""

    path: Path
    payload: dict[str, Any]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.payload["class_names"])

    @property
    def motion_method(self) -> str:
        return str(self.payload["motion_method"])

    def crop_config(self) -> CropConfig:
        return CropConfig.from_mapping(dict(self.payload["crop"]))

    def extract_config(self, *, device: str | None = None) -> ExtractConfig:
        """The extract settings the classifier's training motions were made with (``device`` overrides
        where they are computed; it does not change the motion)."""
        overrides = {"device": device} if device else {}
        return ExtractConfig.from_mapping(dict(self.payload["extract"]), method=self.motion_method, **overrides)

    def scvit_config(self) -> SCViTConfig:
        return SCViTConfig.from_mapping(dict(self.payload["scvit"]))

    def motion_learner(self):
        """The motion learner (eval mode), or None for a classical ``motion.method``."""
        state = self.payload["motion_model"]
        if state is None:
            return None
        from selfme.motion.model import MODEL_FORMAT, MotionLearner

        if state.get("format") != MODEL_FORMAT:
            raise ValueError(f"{self.path}: its motion model has format {state.get('format')!r}, "
                             f"this selfme reads {MODEL_FORMAT!r}")
        learner = MotionLearner(config=state["config"])
        learner.load_networks_state_dict(state)
        return learner.eval()

    def classifier(self) -> SCViT:
        """SCViT with the bundle's weights (built without ImageNet weights: the bundle has them all)."""
        config = SCViTConfig.from_mapping({**self.payload["scvit"], "pretrained": False, "weights_file": None})
        model, _ = create_scvit(config, num_classes=len(self.class_names), in_chans=int(self.payload["in_chans"]))
        model.load_state_dict(self.payload["classifier"])
        return model.eval()

    def front_end(self) -> dict[str, Any]:
        """What turns a clip into the classifier's input (crop, extract, method, motion weights): two
        bundles with equal front ends see the same motion for the same clip."""
        p = self.payload
        return {"crop": p["crop"], "extract": {k: v for k, v in p["extract"].items() if k != "device"},
                "method": p["motion_method"], "motion": p["training"].get("motion_model_sha256"),
                "input": {k: p["scvit"].get(k) for k in ("img_size", "channels", "motion_scale", "strain_scale",
                                                          "normalize")}}


def load_bundle(path: str | os.PathLike = DEFAULT_BUNDLE) -> Bundle:
    """Read and check a bundle: FileNotFoundError when absent, ValueError (one line) when it is not a
    SelfME bundle, has another format version or non-finite weights."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model bundle not found: {path} (build it with `python -m stages.train_full "
                                f"--dataset synthme` or `dvc repro train_full`, or pass --model)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, AttributeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a readable SelfME model bundle ({first})") from exc
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not a SelfME model bundle (format {found!r}, expected {BUNDLE_FORMAT!r})")
    version = payload.get("format_version")
    if version != BUNDLE_VERSION:
        raise ValueError(f"{path} is a SelfME model bundle of format version {version} (written by selfme "
                         f"{payload.get('selfme_version')}), but this selfme {__version__} reads format version "
                         f"{BUNDLE_VERSION}: rebuild it with `python -m stages.train_full`")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"{path}: model bundle lacks {missing}")
    broken = non_finite_tensors({"classifier": payload["classifier"], "motion_model": payload["motion_model"]})
    if broken:
        raise ValueError(f"{path}: model bundle has NaN or infinite weights in {len(broken)} tensor(s) "
                         f"({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}): rebuild it with "
                         f"`python -m stages.train_full`")
    log.info("model bundle %s: %s, classes %s, motion %s, written by selfme %s", path, payload["dataset"],
             payload["class_names"], payload["motion_method"], payload["selfme_version"])
    return Bundle(path=path, payload=payload)
