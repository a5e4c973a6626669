"""Extracted motion as MEGC2019-style motion images: 28 x 28 (u, v, optical strain) PNGs plus labels.

The format is the one of the published MEGC2019 composite inputs (STSTNet and the peers that reuse its
images): one 8-bit 3-channel PNG ``<subject>_<clip>.png`` per clip, channels in file (RGB) order

* R = horizontal flow u, G = vertical flow v (OpenCV forward flow onset -> apex, x right, y down: the
  extract stage's :data:`selfme.extract.config.CONVENTION`, stored without sign changes),
* B = optical strain sqrt(u_x^2 + v_y^2 + (u_y + v_x)^2 / 2) (:func:`selfme.scvit.inputs.optical_strain`),

each min-max normalised to 0..255 per image and channel, and a headerless labels CSV ``db,subject,clip,label``
with CRLF line ends like ``megc2019_combined_3class_gt.csv``. ``cv2.imread`` returns the channels in BGR
order (strain first); :func:`selfme.io.read_image` returns them as (u, v, strain).

What the published images show (checked on the 309 CASME II / SMIC images; tests/test_megc_export.py
repeats the channel checks):

* every channel of every image spans exactly 0..255, so min-max is the last step, after the resize;
* the B channel is the non-negative one (median 15 of 255, skew 3.1, the lowest channel median in all
  309 images); R is antisymmetric under a left-right mirror of the face (median mirror correlation
  -0.32), G symmetric (+0.70): R is u, G is v;
* signs are OpenCV's: in 87% of the 68 surprise clips the brow rows have a G below the image mean (brows
  move up, v < 0); in 82% of the 83 positive clips the right half of the mouth has a larger R than the left
  half (mouth corners move apart);
* the strain was computed before the resize: the strain of the 28 x 28 (u, v) explains the B channel only
  partly (median correlation 0.886 at the best u/v scale ratio), against >= 0.999 when the strain is
  computed after the resize (simulated smooth fields, 8-bit quantised).

So u, v and the strain are computed at crop resolution, the three maps shrunk with ``cv2.INTER_AREA``
(area averaging: anti-aliased like MATLAB's default ``imresize``; a bilinear shrink by ~6x samples four
crop pixels per output pixel and aliases the strain, which is a derivative and the noisiest map), then
min-max normalised. Fields smaller than the output size are enlarged bilinearly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pandas as pd

from selfme.datasets import class_names
from selfme.io import atomic_dir, write_image, write_json, write_text
from selfme.scvit.inputs import IMAGE_CHANNELS, optical_strain
from selfme.scvit.sources import motion_index_samples

log = logging.getLogger(__name__)

MEGC_SIZE = 28
LABELS_NAME = "labels.csv"
FORMAT = "selfme-megc-export/1"
#: A channel whose span is below this fraction of its magnitude is constant up to rounding (float16's
#: epsilon: the stored fields carry no finer detail).
FLAT_TOLERANCE = float(np.finfo(np.float16).eps)


def minmax_uint8(maps: np.ndarray) -> np.ndarray:
    """Per-channel min-max of [H, W, C] to uint8 0..255; a constant channel becomes mid-grey 128.

    Unlike the [-1, 1] min-max of selfme.scvit.inputs, a channel that is constant up to rounding (span <=
    FLAT_TOLERANCE x its magnitude, e.g. the strain of a linear field, whose finite differences jitter in
    the last bits) is treated as constant instead of stretching its rounding noise to 0..255.
    """
    lo = maps.min(axis=(0, 1), keepdims=True)
    hi = maps.max(axis=(0, 1), keepdims=True)
    span = hi - lo
    flat = span <= FLAT_TOLERANCE * np.maximum(np.abs(lo), np.abs(hi))
    unit = np.where(flat, 0.5, (maps - lo) / np.where(flat, 1.0, span))
    return np.rint(unit * 255.0).astype(np.uint8)


def megc_image(motion: np.ndarray, *, size: int = MEGC_SIZE, name: str = "motion") -> np.ndarray:
    """Displacement field [H, W, 2] (crop pixels) -> uint8 RGB [size, size, 3] = (u, v, optical strain).

    Strain at crop resolution, then INTER_AREA shrink of (u, v, strain), then per-channel min-max (see the
    module docstring for why this order). ``name`` (the file) prefixes the errors.
    """
    motion = np.asarray(motion)
    if motion.ndim != 3 or motion.shape[2] != 2 or min(motion.shape[:2]) < 2:
        raise ValueError(f"{name}: expected a displacement field [H, W, 2], got shape {motion.shape}")
    motion = motion.astype(np.float32)
    if not np.isfinite(motion).all():
        raise ValueError(f"{name}: the displacement field has NaN or infinite values")
    maps = np.dstack([motion, optical_strain(motion)])
    shrink = motion.shape[0] >= size and motion.shape[1] >= size
    small = cv2.resize(maps, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return minmax_uint8(small)


def _check_labels(table: pd.DataFrame, index: Path, protocol: str) -> None:
    """The index's label ids must be classes of ``protocol`` and agree with its label names."""
    names = class_names(protocol)
    ids = table["label_id"].astype(int)
    bad = sorted(set(ids) - set(range(len(names))))
    if bad:
        raise ValueError(f"{index}: label ids {bad} are not classes of protocol {protocol!r} {names}")
    if "label" in table.columns:
        wrong = table["label"].astype(str).to_numpy() != np.asarray([names[i] for i in ids])
        if wrong.any():
            row = table[wrong].iloc[0]
            raise ValueError(f"{index}: label {row['label']!r} with label_id {int(row['label_id'])} does not "
                             f"match protocol {protocol!r} {names} (choose the protocol with --protocol)")


def _index_path(motions: str | os.PathLike) -> Path:
    path = Path(motions)
    if path.is_dir():
        path = path / "index.csv"
    if not path.is_file():
        raise FileNotFoundError(f"motion index not found: {path}")
    return path


def _samples(indexes: Sequence[Path], protocol: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """All indexes' samples (db, subject, clip, label_id, path, image) and each db's motion method."""
    frames, methods = [], {}
    for index in indexes:
        loaded = motion_index_samples(index)  # checks columns, motion files, duplicates
        if len(loaded.excluded):  # an export is all of the index or nothing
            first = loaded.excluded.iloc[0]
            raise ValueError(f"{first['path']}: {first['reason']} ({len(loaded.excluded)} clip(s) of {index} "
                             f"cannot be exported)")
        samples = loaded.frame
        table = pd.read_csv(index, dtype={"subject": str, "clip": str, "label": str}).dropna(subset=["motion_path"])
        _check_labels(table, index, protocol)
        method = str(table["motion_method"].iloc[0]) if "motion_method" in table.columns else "unknown"
        methods.update({str(db): method for db in samples["db"].unique()})
        frames.append(samples)
    frame = pd.concat(frames, ignore_index=True)
    names = frame["subject"] + "_" + frame["clip"] + ".png"
    clash = names[names.duplicated()]
    if not clash.empty:
        raise ValueError(f"two clips export to the same file {clash.iloc[0]} (subjects of different datasets "
                         f"must not share a name)")
    return frame.assign(image=names), methods


def labels_text(frame: pd.DataFrame) -> str:
    """Headerless ``db,subject,clip,label`` lines with CRLF ends (megc2019_combined_3class_gt.csv)."""
    return "".join(f"{r.db},{r.subject},{r.clip},{int(r.label_id)}\r\n" for r in frame.itertuples(index=False))


def export_megc(motions: Sequence[str | os.PathLike], out: str | os.PathLike, *, size: int = MEGC_SIZE,
                protocol: str = "megc3") -> dict[str, Any]:
    """Write every clip of the motion indexes ``motions`` (index.csv files or their folders) into ``out``.

    ``out`` gets ``<subject>_<clip>.png`` per clip, ``labels.csv`` and ``export.json`` (format, channels,
    size, source indexes, motion method per db); it is replaced as a whole, only if every clip succeeds.
    Dataset names become MEGC2019 db names (selfme.metrics.logs.MEGC_DB: smic_hs -> smic); others stay.
    Returns the number of images per db.
    """
    if size < 8:
        raise ValueError(f"export size {size} is too small (MEGC2019 images are {MEGC_SIZE} x {MEGC_SIZE})")
    if not motions:
        raise ValueError("no motion index given")
    indexes = [_index_path(m) for m in motions]
    frame, methods = _samples(indexes, protocol)
    with atomic_dir(out) as tmp:
        for row in frame.itertuples(index=False):
            write_image(tmp / row.image, megc_image(np.load(row.path), size=size, name=row.path))
        write_text(tmp / LABELS_NAME, labels_text(frame))
        counts = {str(db): int(n) for db, n in frame["db"].value_counts(sort=False).items()}
        write_json(tmp / "export.json", {
            "format": FORMAT, "size": size, "channels_rgb": list(IMAGE_CHANNELS), "protocol": protocol,
            "classes": list(class_names(protocol)), "resize": "INTER_AREA after the strain, then min-max",
            "sources": [p.as_posix() for p in indexes], "motion_method": methods, "images": counts})
    log.info("%s: %d MEGC2019 images (%s)", out, len(frame), counts)
    return counts
