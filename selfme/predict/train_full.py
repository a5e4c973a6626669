"""Training the deployable classifier: SCViT on ALL subjects of a dataset, then the model bundle.

The schedule is a LOSO fold's (params.yaml ``loso``: epochs, batch size, lr, decay, flips, class
weights) run through the same function, :func:`selfme.scvit.train.train_fold`, with every subject in
the training set and no test set. The seed is ``fold_seed(loso.seeds[0], "<all subjects>")``: the
first LOSO seed (one model, not one per seed). The motions are the extract stage's
(``data/motion/<method>/<dataset>/index.csv``); their sidecars must name the same method, extract
parameters and motion-model checksum as the bundle records, so the classifier is never packed with a
front end it was not trained on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from selfme.datasets import class_names as protocol_classes
from selfme.extract.config import ExtractConfig
from selfme.io import file_sha256
from selfme.face.config import CropConfig
from selfme.predict.bundle import make_bundle, save_bundle
from selfme.scvit.factory import SCViTConfig
from selfme.scvit.inputs import HORIZONTAL
from selfme.scvit.sources import Samples, build_inputs, load_samples
from selfme.device import resolve_device
from selfme.scvit.train import LosoConfig, deterministic, fold_seed, train_fold

log = logging.getLogger(__name__)

#: The pseudo-subject name the full-data model's seed is derived from.
ALL_SUBJECTS = "<all subjects>"


def motion_model_state(path: str | os.PathLike) -> dict[str, Any]:
    """The motion learner of a model file as bundle content: format, architecture, state dicts."""
    from selfme.motion.model import MODEL_FORMAT, load_motion_model

    learner = load_motion_model(path)
    return {"format": MODEL_FORMAT, "config": learner.config, **learner.networks_state_dict()}


def check_provenance(samples: Samples, config: ExtractConfig, model_checksum: str | None) -> int:
    """Compare every motion file's sidecar with the settings the bundle will record; a ValueError lists
    the first disagreement. Returns how many sidecars were checked (ground-truth motions have none)."""
    checked, bad = 0, []
    for path in samples.frame["path"]:
        sidecar = Path(path).with_suffix(".json")
        if not sidecar.is_file():
            continue
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        checked += 1
        expected = {"method": config.method, "params": config.method_params()}
        if config.method == "selfme":
            expected["model_checksum"] = model_checksum
        for key, value in expected.items():
            if json.dumps(meta.get(key), sort_keys=True) != json.dumps(value, sort_keys=True):
                bad.append(f"{sidecar}: {key} {meta.get(key)!r}, params give {value!r}")
                break
    if bad:
        raise ValueError(f"{len(bad)} of {checked} motion files were extracted with other settings than the "
                         f"bundle would record (e.g. {bad[0]}): rerun the extract stage first")
    return checked


def _motion_model(motion_method: str, motion_model: str | os.PathLike | None) -> tuple[Any, str | None]:
    """The motion learner's state and file checksum for ``selfme`` motion (None, None for classical flow)."""
    if motion_method != "selfme":
        return None, None
    if motion_model is None:
        raise ValueError("motion.method selfme needs the motion model file (models/motion/finetune.pt)")
    return motion_model_state(motion_model), file_sha256(motion_model)


def _train_all(samples, labels: np.ndarray, *, model_config: SCViTConfig, config: LosoConfig, num_classes: int,
               seed: int, progress: bool, dataset: str):
    """SCViT trained on every sample with the LOSO fold schedule (``train_fold``): (model on CPU, history)."""
    x, channels = build_inputs(samples, model_config.input_config())
    y = torch.as_tensor(labels, dtype=torch.long)
    negate = tuple(i for i, c in enumerate(channels) if c in HORIZONTAL)
    device = resolve_device(config.device, key="loso.device")
    threads = torch.get_num_threads()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    log.info("train_full %s: %d samples from %d subjects, input %s, %s, omega %g, %d epochs on %s", dataset,
             len(y), samples.frame["subject"].nunique(), tuple(x.shape[1:]), model_config.model_name,
             model_config.omega, config.epochs, device)
    try:
        with deterministic():
            model, history = train_fold(x, y, model_config=model_config, config=config, num_classes=num_classes,
                                        seed=seed, device=device, negate=negate, progress=progress)
    finally:
        torch.set_num_threads(threads)
    return model.cpu().eval(), history


def train_full(*, motions: str | os.PathLike, dataset: str, protocol: str, crop: Mapping[str, Any],
               motion_method: str, extract: Mapping[str, Any], scvit: Mapping[str, Any],
               loso_params: Mapping[str, Any], motion_model: str | os.PathLike | None,
               out: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Train SCViT on every sample of ``motions`` and write the bundle to ``out``; returns a summary."""
    start = time.perf_counter()
    crop_config = CropConfig.from_mapping(dict(crop))
    extract_config = ExtractConfig.from_mapping(dict(extract), method=motion_method)
    model_config = SCViTConfig.from_mapping(dict(scvit))
    config = LosoConfig.from_mapping(dict(loso_params))
    names = protocol_classes(protocol)
    samples = load_samples(motions, dataset=dataset, protocol=protocol)
    labels = np.array(samples.frame["label_id"], dtype=np.int64)  # a copy: torch wants writable memory
    if labels.min() < 0 or labels.max() >= len(names):
        raise ValueError(f"labels lie outside 0..{len(names) - 1} (protocol {protocol!r}: {list(names)})")
    if samples.kind != "motion":
        raise ValueError("train_full needs displacement fields (the extract stage's index.csv), not motion images")

    state, checksum = _motion_model(motion_method, motion_model)
    checked = check_provenance(samples, extract_config, checksum)
    seed = fold_seed(config.seeds[0], ALL_SUBJECTS)
    subjects = list(dict.fromkeys(samples.frame["subject"].astype(str)))
    model, history = _train_all(samples, labels, model_config=model_config, config=config, num_classes=len(names),
                                seed=seed, progress=progress, dataset=dataset)
    seconds = time.perf_counter() - start
    counts = Counter(names[i] for i in labels.tolist())
    training = {"n_samples": len(labels), "subjects": subjects, "per_class": {n: counts.get(n, 0) for n in names},
                "seed": seed, "loso": config.result_key(), "final": history[-1], "history": history,
                "data_digest": samples.digest(), "motions": Path(motions).as_posix(),
                "motion_model": Path(motion_model).as_posix() if motion_model else None,
                "motion_model_sha256": checksum, "sidecars_checked": checked}
    extract_values = {f.name: getattr(extract_config, f.name) for f in dataclasses.fields(extract_config)
                      if f.name != "method"}
    payload = make_bundle(dataset=dataset, protocol=protocol, class_names=names,
                          crop=dataclasses.asdict(crop_config), extract=extract_values, motion_method=motion_method,
                          motion_model=state, scvit=model_config.as_dict(), classifier=model, training=training)
    save_bundle(out, payload)
    log.info("train_full %s: final loss %.4f, training accuracy %.3f, %.1f s -> %s", dataset,
             history[-1]["loss"], history[-1]["train_acc"], seconds, out)
    return {"bundle": Path(out).as_posix(), "dataset": dataset, "n_samples": len(labels), "n_subjects": len(subjects),
            "per_class": training["per_class"], "epochs": config.epochs, "omega": model_config.omega,
            "final_loss": round(history[-1]["loss"], 6), "train_acc": round(history[-1]["train_acc"], 4),
            "seconds": round(seconds, 2)}
