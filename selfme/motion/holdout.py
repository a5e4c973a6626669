"""Which clips the motion learner's stages train on: a stage's ``data`` (crop folders, or ``all``), their
pooled manifests, and the seeded held-out split (the clips neither stage trains on are the ones
motion_eval scores apart)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from selfme.datasets import read_manifest


def _as_list(data: str | Sequence[str]) -> list[str]:
    return [data] if isinstance(data, (str, os.PathLike)) else list(data)


def load_face_manifests(data: str | Sequence[str]) -> tuple[pd.DataFrame, list[Path]]:
    """Concatenate ``<folder>/manifest.csv`` of one or more face-crop folders (or manifest CSV paths)."""
    frames, paths = [], []
    for entry in _as_list(data):
        path = Path(entry)
        path = path / "manifest.csv" if path.suffix.lower() != ".csv" else path
        frame = read_manifest(path)
        frame["_manifest"] = str(path)
        frames.append(frame)
        paths.append(path)
    return pd.concat(frames, ignore_index=True), paths


def split_holdout(manifest: pd.DataFrame, holdout_clips: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, held-out) rows: ``holdout_clips`` clips chosen by a seeded permutation (0: no held-out set)."""
    if holdout_clips <= 0:
        return manifest, manifest.iloc[:0]
    if holdout_clips >= len(manifest):
        raise ValueError(f"holdout_clips {holdout_clips} leaves no training clips (manifest has {len(manifest)})")
    order = np.random.default_rng([seed, 0xD0]).permutation(len(manifest))
    held = np.sort(order[:holdout_clips])
    mask = np.zeros(len(manifest), dtype=bool)
    mask[held] = True
    return manifest[~mask].reset_index(drop=True), manifest[mask].reset_index(drop=True)


def resolve_face_data(data: str | Sequence[str], datasets: Mapping[str, Any] | None = None, *,
                      faces_dir: str | os.PathLike = "data/faces") -> list[str]:
    """A stage's ``data``: one face-crop folder, a list of them (their clips are pooled), or ``all``: the
    crop folder ``<faces_dir>/<name>`` of every entry of params.yaml's ``datasets`` section (the paper
    fine-tunes "on the ME datasets", all of them)."""
    if isinstance(data, str) and data == "all":
        if not datasets:
            raise KeyError("data: all needs params.yaml's datasets section (no dataset listed)")
        return [str(Path(faces_dir) / name) for name in datasets]
    entries = _as_list(data)
    if not entries or not all(isinstance(e, (str, os.PathLike)) and str(e) for e in entries):
        raise ValueError(f"data must be a folder, a list of folders or 'all', got {data!r}")
    return [str(e) for e in entries]


def held_out_clips(pretrain: Mapping[str, Any], finetune: Mapping[str, Any],
                   datasets: Mapping[str, Any] | None = None) -> list[str]:
    """``subject/clip`` of the clips that neither stage trained on: fine-tuning's held-out clips
    (``holdout_clips``, ``seed``), less those pretraining saw when it trains on crop folders too."""
    def held(section: Mapping[str, Any], data: Any) -> tuple[set[str], set[str]]:
        """(held-out clip names, all clip names) of one stage's data."""
        manifest, _ = load_face_manifests(resolve_face_data(data, datasets))
        _, rows = split_holdout(manifest, int(section.get("holdout_clips", 0) or 0), int(section.get("seed", 0)))
        return ({f"{r.subject}/{r.clip}" for r in rows.itertuples(index=False)},
                {f"{r.subject}/{r.clip}" for r in manifest.itertuples(index=False)})

    if not int(finetune.get("holdout_clips", 0) or 0):
        return []
    kept, _ = held(finetune, finetune["data"])
    if pretrain.get("source", "manifest") in ("synthme", "manifest"):
        pre_held, pre_all = held(pretrain, pretrain["data"])
        kept = {c for c in kept if c in pre_held or c not in pre_all}
    return sorted(kept)
