"""Where SCViT's ImageNet weights come from: a local file, the Hugging Face cache, or (online) a download.

timm loads them and adapts them to the motion input: the 3-channel patch projection is converted to
any channel count (``in_chans``), the position embeddings are resampled to the image size, the patch
projection to another patch size, and the 1000-class head is dropped. Without a network (the tests set
HF_HUB_OFFLINE=1) a missing file fails at once with a message that names the file and where it goes.

timm loads a checkpoint whose classifier is dropped non-strictly and only logs (at INFO) the tensors it
did not find, so another network's state dict would leave the whole model at its random initialisation.
``create_backbone`` therefore reads the file itself, passes it through the model family's own
``checkpoint_filter_fn`` (the key mapping timm applies) and refuses it, naming the file and the
missing tensors, unless every tensor of the model but the classifier comes from it.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Files timm reads from a Hugging Face model repository, in order of preference.
HF_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightsNotFound(FileNotFoundError):
    """Pretrained weights were asked for but are not on disk (and cannot be downloaded)."""


class WeightsMismatch(WeightsNotFound):
    """A weights file is on disk but does not hold the model's weights (another network's state dict, a
    pickled list, a truncated file); a WeightsNotFound, since the weights asked for are still missing."""


@dataclass(frozen=True)
class WeightsSource:
    """timm ``create_model`` arguments for the weights, and a description for the logs."""

    kwargs: dict[str, Any]
    description: str
    download: bool = False


def hf_offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "")
    if flag.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return True
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants
        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return os.path.join("~", ".cache", "huggingface", "hub")


def _hf_cached(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in HF_FILES:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def _file_overlay(path: Path) -> dict[str, Any]:
    # timm's ViT configs with custom_load read JAX .npz files; a state dict (.safetensors/.pth) is not one.
    return {"file": str(path), "custom_load": path.suffix.lower() == ".npz"}


def resolve_weights(model_name: str, *, pretrained: bool, weights_file: str | os.PathLike | None) -> WeightsSource:
    """Decide where ``model_name``'s ImageNet weights come from; raise WeightsNotFound when nowhere."""
    if not pretrained:
        return WeightsSource({"pretrained": False}, "random initialisation (scvit.pretrained: false)")
    if weights_file:
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise WeightsNotFound(
                f"scvit.weights_file {str(weights_file)!r} not found: put the ImageNet weights of {model_name} "
                f"(timm state dict .safetensors/.pth, or the original .npz) there, clear scvit.weights_file to use "
                f"the Hugging Face cache, or set scvit.pretrained: false for random initialisation")
        return WeightsSource({"pretrained": True, "pretrained_cfg_overlay": _file_overlay(path)}, f"file {path}")
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        raise WeightsNotFound(f"timm knows no pretrained weights for {model_name!r}: set scvit.weights_file to a "
                              f"local file or scvit.pretrained: false")
    repo = getattr(cfg, "hf_hub_id", None)
    if repo:
        cached = _hf_cached(repo)
        if cached is not None:
            return WeightsSource({"pretrained": True, "pretrained_cfg_overlay": _file_overlay(cached)},
                                 f"Hugging Face cache {cached}")
    where = (f"the Hugging Face repo {repo} (file {HF_FILES[0]}) in the Hugging Face cache {hf_cache_dir()}"
             if repo else f"{getattr(cfg, 'url', None)} in $TORCH_HOME/hub/checkpoints/")
    message = (f"ImageNet weights for {model_name} are not on this machine: timm looks for {where}. On a "
               f"connected machine run `python -c \"import timm; timm.create_model('{model_name}', "
               f"pretrained=True)\"` and copy the cache folder here, or set scvit.weights_file to a local copy "
               f"of the weights, or set scvit.pretrained: false to train from random initialisation")
    if hf_offline() or not repo:
        raise WeightsNotFound(message + " (HF_HUB_OFFLINE is set: no download attempted)" if repo else message)
    return WeightsSource({"pretrained": True}, f"download of {repo}", download=True)


def missing_weights_message(source: WeightsSource, model_name: str, exc: BaseException) -> str:
    return (f"could not download ImageNet weights for {model_name} ({source.description}): {exc}. Set "
            f"scvit.weights_file to a local copy, put them in the Hugging Face cache {hf_cache_dir()}, or set "
            f"scvit.pretrained: false to train from random initialisation")


#: Errors of reading a checkpoint that say the file is not a state dict (torch, safetensors, numpy).
_READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, AttributeError, TypeError, EOFError,
                pickle.UnpicklingError)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(exc).__name__)


def _fix_hint(model_name: str) -> str:
    return (f"point scvit.weights_file at the ImageNet weights of {model_name} (timm state dict .safetensors/.pth, "
            f"or the original .npz), or set scvit.pretrained: false for random initialisation")


def read_state_dict(path: str | os.PathLike, model_name: str) -> dict[str, Any]:
    """The tensors of a checkpoint file as timm reads them (safetensors, or torch.load with
    weights_only; ``state_dict`` / ``model`` wrappers and ``module.`` prefixes removed)."""
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path))
    except _READ_ERRORS as exc:
        raise WeightsMismatch(f"{path}: not a readable weights file ({_first_line(exc)}); "
                              f"{_fix_hint(model_name)}") from exc
    import torch

    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsMismatch(f"{path}: holds no state dict of tensors; {_fix_hint(model_name)}")
    return state


def missing_pretrained_keys(backbone: Any, state: dict[str, Any]) -> list[str]:
    """Tensors of ``backbone`` (classifier aside) that ``state`` does not provide, after the key mapping
    of the model family's ``checkpoint_filter_fn`` (what timm applies before loading)."""
    filter_fn = getattr(sys.modules.get(type(backbone).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(dict(state), backbone)
    classifier = (getattr(backbone, "pretrained_cfg", None) or {}).get("classifier") or ()
    heads = tuple(f"{name}." for name in ((classifier,) if isinstance(classifier, str) else classifier))
    return [k for k in backbone.state_dict() if k not in state and not k.startswith(heads)]


def create_backbone(model_name: str, source: WeightsSource, **kwargs: Any) -> Any:
    """``timm.create_model`` with the weights ``source`` names. A weights file must hold every tensor of
    the model but its classifier: otherwise WeightsMismatch names the file and the missing tensors (a
    download that fails raises WeightsNotFound with where to put the file)."""
    import timm

    overlay = source.kwargs.get("pretrained_cfg_overlay") or {}
    path, npz = overlay.get("file"), bool(overlay.get("custom_load"))
    state = read_state_dict(path, model_name) if path and not npz else None
    try:
        backbone = timm.create_model(model_name, **source.kwargs, **kwargs)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        if source.download:
            raise WeightsNotFound(missing_weights_message(source, model_name, exc)) from exc
        if path and (npz or "loading state_dict" in str(exc)):  # shapes of another model, or a foreign .npz
            raise WeightsMismatch(f"{path}: not the weights of {model_name} ({_first_line(exc)}); "
                                  f"{_fix_hint(model_name)}") from exc
        raise
    if state is not None:
        try:
            missing = missing_pretrained_keys(backbone, state)
        except _READ_ERRORS as exc:
            raise WeightsMismatch(f"{path}: not the weights of {model_name} ({_first_line(exc)}); "
                                  f"{_fix_hint(model_name)}") from exc
        if missing:
            total = len(backbone.state_dict())
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise WeightsMismatch(f"{path}: not the weights of {model_name}: {len(missing)} of its {total} tensors "
                                  f"are missing from the file ({shown}); {_fix_hint(model_name)}")
    return backbone
