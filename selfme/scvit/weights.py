"""Where SCViT's ImageNet weights come from: a local file, the Hugging Face cache, or (online) a download.

timm loads them and adapts them to the motion input: the 3-channel patch projection is converted to
any channel count (``in_chans``), the position embeddings are resampled to the image size, the patch
projection to another patch size, and the 1000-class head is dropped. Without a network (the tests set
HF_HUB_OFFLINE=1) a missing file fails at once with a message that names the file and where it goes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Files timm reads from a Hugging Face model repository, in order of preference.
HF_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightsNotFound(FileNotFoundError):
    """Pretrained weights were asked for but are not on disk (and cannot be downloaded)."""


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
