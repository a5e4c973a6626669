"""The pretrain and finetune stages' training run as a plain function (:func:`run_stage`; the stage entry
is :mod:`selfme.motion.stage`).

pretrain: frame pairs from VoxCeleb (``source: voxceleb``, ``data`` = its folder) or, for the demo, from
cropped ME clips whose target frames get synthetic head motion (``source: synthme``, ``data`` = a face-crop
folder with manifest.csv). finetune: random frame pairs of cropped ME clips, starting from the pretrained
model (paper: Adam lr 2e-6, /10 at epochs 20 and 30).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from selfme.config import ParamsError, as_dict, set_threads
from selfme.cache import code_digest, key_payload, sha256_hex
from selfme.io import file_sha256
from selfme.motion.checkpoint import resolve_checkpoint_dir, trajectory_params
from selfme.motion.config import MotionConfig, stage_config
from selfme.motion.data import FrameFolder, FramePairDataset, OnsetApexPairs, VideoFile, me_clip_videos, voxceleb_videos
from selfme.motion.holdout import load_face_manifests, split_holdout
from selfme.motion.model import MotionLearner, load_weights
from selfme.motion.train import train_motion

log = logging.getLogger(__name__)
#: The module whose import closure computes a training run (its code digest keys the checkpoints).
MOTION_MODULE = "selfme.motion.pipeline"



def videos_fingerprint(videos: Sequence[FrameFolder | VideoFile]) -> str:
    """SHA-256 over every video's name and its files' names and sizes (cheap; catches re-cropped data)."""
    def chunks():
        for video in videos:
            yield video.name
            for p in (video.paths if isinstance(video, FrameFolder) else [video.path]):
                yield f"{p.name}:{p.stat().st_size};"
    return sha256_hex(chunks())


def manifest_clip_videos(manifest: pd.DataFrame) -> list[FrameFolder]:
    videos = []
    for path, group in manifest.groupby("_manifest", sort=False):
        videos += me_clip_videos(group.drop(columns="_manifest"), manifest_path=path)
    return videos


def run_stage(stage: str, motion: Mapping[str, Any], section: Mapping[str, Any], *, out: str | os.PathLike,
              checkpoints: str | os.PathLike, live_dir: str | os.PathLike | None,
              init: str | os.PathLike | None = None, progress: bool = True) -> list[dict[str, float]]:
    """Build the data and the learner for ``stage`` (pretrain | finetune) and train it.

    ``init`` (finetune: the pretrained model; pretrain: ``section['init']`` when set) initialises the
    networks. Checkpoints go to ``checkpoints/<key of motion, section, threads, data, init and code>/``
    (``selfme.motion.checkpoint``). An epoch is
    ``pairs_per_epoch`` pairs, or, when that is null, ``repeats`` pairs per video (FOMM's num_repeats).
    """
    data, config = stage_config(section, prefix=stage)
    set_threads(config.threads)
    arch = MotionConfig.from_mapping(motion).architecture()
    size = int(arch["image_size"])
    head_motion = as_dict(data.head_motion) if data.source == "synthme" and data.head_motion else None
    val_dataset = None
    if data.source == "voxceleb":
        videos = voxceleb_videos(data.data, split=data.voxceleb_split)
    else:
        manifest, _ = load_face_manifests(data.data)
        train_rows, held = split_holdout(manifest, int(data.holdout_clips or 0), config.seed)
        videos = manifest_clip_videos(train_rows)
        if len(held):
            val_dataset = ManifestOnsetApexPairs(held, size)
    if not config.pairs_per_epoch:
        if not data.repeats:
            raise ParamsError(f"{stage}.pairs_per_epoch: set it, or leave it null and set {stage}.repeats")
        config = dataclasses.replace(config, pairs_per_epoch=int(data.repeats) * len(videos))
    dataset = FramePairDataset(videos, image_size=size, pairs_per_epoch=config.pairs_per_epoch, seed=config.seed,
                               hflip=data.hflip, head_motion=head_motion, onset_apex=float(data.onset_apex or 0.0),
                               apex_window=data.apex_window)
    init = init if init is not None else data.init
    torch.manual_seed(config.seed)  # the networks' initialisation (and a random VGG's) follows the seed
    model = MotionLearner(config=arch, losses=as_dict(data.loss), vgg=as_dict(data.vgg))
    if init:
        load_weights(model, init)
        log.info("%s: networks initialised from %s", stage, init)
    payload = key_payload(  # the checkpoint key: the torch threads order float sums, the code computes the run
        params={"stage": stage, "motion": arch, "section": trajectory_params(section),
                "threads": torch.get_num_threads()},
        inputs={"data": videos_fingerprint(videos), "init": file_sha256(init) if init else None},
        code=code_digest(MOTION_MODULE))
    run_dir = resolve_checkpoint_dir(checkpoints, payload)
    log.info("%s: %d videos, %d pairs/epoch, %d epochs, checkpoints in %s", stage, len(videos),
             config.pairs_per_epoch, config.epochs, run_dir)
    meta = {"stage": stage, "source": data.source, "init": str(init) if init else None,
            "section": {k: v for k, v in section.items()}}
    return train_motion(model, dataset, config=config, out_path=out, checkpoint_dir=run_dir, live_dir=live_dir,
                        val_dataset=val_dataset, hash_payload=payload, meta=meta, progress=progress)


class ManifestOnsetApexPairs(OnsetApexPairs):
    """Held-out clips' onset -> apex pairs, resolved per manifest file."""

    def __init__(self, held: pd.DataFrame, image_size: int) -> None:
        self.items, self.image_size = [], int(image_size)
        for path, group in held.groupby("_manifest", sort=False):
            part = OnsetApexPairs(group.drop(columns="_manifest"), image_size=image_size, manifest_path=path)
            self.items += part.items
