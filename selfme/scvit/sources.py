"""Where LOSO's samples come from, and their input tensors.

Three sources, told apart by what ``motions`` points at:

* a motion index CSV (the extract stage's): manifest columns plus ``motion_path``, a float16/float32
  .npy displacement field [H, W, 2] per clip (a folder holding ``index.csv`` works too);
* a face-crop folder with ``manifest.csv`` whose ``ground_truth`` column names SynthME's ground-truth
  motion per clip (the stand-in until the extract stage runs);
* a folder of precomputed motion images ``<subject>_<clip>.png`` plus a labels CSV, either headerless
  ``db, subject, clip, label`` (MEGC2019's composite ground truth) or with a header naming
  ``db``/``dataset``, ``subject``, ``clip`` and ``label``/``label_id`` (class ids or class names).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from selfme.datasets import class_names
from selfme.io import read_image
from selfme.metrics.logs import MEGC_DB
from selfme.scvit.inputs import IMAGE_CHANNELS, InputConfig, image_to_input, motion_to_input

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SAMPLE_COLUMNS = ["db", "subject", "clip", "label_id", "path"]


@dataclass(frozen=True)
class Samples:
    """One row per clip (db, subject, clip, label_id, path); ``kind`` is ``motion`` or ``image``."""

    frame: pd.DataFrame
    kind: str

    def __len__(self) -> int:
        return len(self.frame)

    def digest(self) -> str:
        """SHA-256 over every sample's identity, label and file content (keys the fold results)."""
        h = hashlib.sha256(self.kind.encode())
        for row in self.frame.itertuples(index=False):
            h.update(f"{row.db}|{row.subject}|{row.clip}|{int(row.label_id)}|".encode())
            h.update(hashlib.sha256(Path(row.path).read_bytes()).digest())
        return h.hexdigest()


def _resolve(paths: pd.Series, base: Path) -> list[Path]:
    """Relative paths: from the current folder (the repository root, for stages), else from the index's
    folder or the nearest folder above it where they exist."""
    out, missing = [], []
    roots = [base.resolve(), *base.resolve().parents]
    for p in paths.astype(str):
        path = Path(p)
        if not path.is_absolute() and not path.exists():
            path = next((root / path for root in roots if (root / path).exists()), path)
        (out if path.is_file() else missing).append(path)
    if missing:
        raise FileNotFoundError(f"{len(missing)} motion file(s) missing, e.g. {missing[0]}")
    return out


def _db_matches(db: pd.Series, dataset: str) -> pd.Series:
    names = {dataset, MEGC_DB.get(dataset, dataset)} | {k for k, v in MEGC_DB.items() if v == dataset}
    return db.astype(str).isin(names)


def _finish(frame: pd.DataFrame, kind: str, dataset: str | None) -> Samples:
    if dataset is not None:
        frame = frame[_db_matches(frame["db"], dataset)]
    elif frame["db"].nunique() > 1:
        raise ValueError(f"the samples span several datasets {sorted(frame['db'].unique())}: choose one with --dataset")
    if frame.empty:
        raise ValueError(f"no samples{' for dataset ' + repr(dataset) if dataset else ''}")
    if frame.duplicated(["subject", "clip"]).any():
        raise ValueError("duplicate (subject, clip) rows in the sample list")
    frame = frame.assign(db=frame["db"].map(lambda d: MEGC_DB.get(str(d), str(d))))
    return Samples(frame[SAMPLE_COLUMNS].reset_index(drop=True), kind)


def motion_index_samples(index: str | Path, *, dataset: str | None = None, column: str = "motion_path") -> Samples:
    """Samples from a CSV with ``subject, clip, label_id`` and a column of .npy motion paths."""
    index = Path(index)
    if not index.is_file():
        raise FileNotFoundError(f"motion index not found: {index}")
    frame = pd.read_csv(index, dtype={"subject": str, "clip": str})
    missing = [c for c in ("subject", "clip", "label_id", column) if c not in frame.columns]
    if missing:
        raise ValueError(f"{index} lacks the column(s) {missing}")
    frame = frame.dropna(subset=[column])
    db = frame["dataset"].astype(str) if "dataset" in frame.columns else pd.Series(dataset or "unknown", index=frame.index)
    if dataset is not None:
        frame, db = frame[_db_matches(db, dataset)], db[_db_matches(db, dataset)]
    paths = _resolve(frame[column], index.parent)
    out = pd.DataFrame({"db": db.values, "subject": frame["subject"].values, "clip": frame["clip"].values,
                        "label_id": frame["label_id"].astype(int).values, "path": [str(p) for p in paths]})
    return _finish(out, "motion", None)


def read_labels(path: str | Path, *, protocol: str = "megc3") -> pd.DataFrame:
    """A labels CSV as (db, subject, clip, label_id); headerless files are ``db, subject, clip, label``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels CSV not found: {path}")
    first = path.read_text(encoding="utf-8").splitlines()[0].lower()
    header = "subject" in [c.strip() for c in first.split(",")]
    frame = pd.read_csv(path, header=0 if header else None, dtype=str,
                        names=None if header else ["db", "subject", "clip", "label"])
    frame.columns = [c.strip().lower() for c in frame.columns]
    frame = frame.rename(columns={"dataset": "db"})
    label = "label_id" if "label_id" in frame.columns else "label"
    missing = [c for c in ("db", "subject", "clip", label) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing} (need db/dataset, subject, clip, label)")
    values = frame[label].str.strip()
    if values.str.fullmatch(r"-?\d+").all():
        ids = values.astype(int)
    else:
        names = class_names(protocol)
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"{path}: labels {unknown} are not classes of protocol {protocol!r} {names}")
        ids = values.map(names.index)
    return pd.DataFrame({"db": frame["db"].str.strip(), "subject": frame["subject"].str.strip(),
                         "clip": frame["clip"].str.strip(), "label_id": ids.astype(int)})


def image_samples(folder: str | Path, labels: str | Path, *, dataset: str | None = None,
                  protocol: str = "megc3") -> Samples:
    """Samples from a folder of ``<subject>_<clip>.png`` motion images and a labels CSV."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"motion image folder not found: {folder}")
    frame = read_labels(labels, protocol=protocol)
    if dataset is not None:
        frame = frame[_db_matches(frame["db"], dataset)]
    paths, missing = [], []
    for subject, clip in zip(frame["subject"], frame["clip"]):
        found = next((folder / f"{subject}_{clip}{s}" for s in IMAGE_SUFFIXES
                      if (folder / f"{subject}_{clip}{s}").is_file()), None)
        paths.append(str(found) if found else "")
        if found is None:
            missing.append(f"{subject}_{clip}")
    if missing:
        raise FileNotFoundError(f"{len(missing)} labelled sample(s) have no image in {folder}, e.g. "
                                f"{missing[0]}.png")
    return _finish(frame.assign(path=paths), "image", dataset)


def load_samples(motions: str | Path, *, labels: str | Path | None = None, dataset: str | None = None,
                 protocol: str = "megc3") -> Samples:
    """Dispatch on what ``motions`` is (see the module docstring)."""
    motions = Path(motions)
    if labels is not None:
        return image_samples(motions, labels, dataset=dataset, protocol=protocol)
    if motions.is_file():
        return motion_index_samples(motions, dataset=dataset)
    if (motions / "index.csv").is_file():
        return motion_index_samples(motions / "index.csv", dataset=dataset)
    manifest = motions / "manifest.csv"
    if manifest.is_file() and "ground_truth" in pd.read_csv(manifest, nrows=0).columns:
        return motion_index_samples(manifest, dataset=dataset, column="ground_truth")
    raise FileNotFoundError(f"{motions}: not a motion index CSV, a folder with index.csv, a face-crop folder "
                            f"with ground-truth motion, nor (with --labels) a folder of motion images")


def build_inputs(samples: Samples, config: InputConfig) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Input tensor [N, C, img_size, img_size] of every sample, and its channel names."""
    tensors = []
    for path in samples.frame["path"]:
        if samples.kind == "motion":
            tensors.append(motion_to_input(np.load(path), config))
        else:
            tensors.append(image_to_input(read_image(path), config))
    x = torch.stack(tensors)
    if samples.kind == "motion":
        names = config.channels
    else:
        names = IMAGE_CHANNELS if x.shape[1] == 3 else tuple(f"c{i}" for i in range(x.shape[1]))
    return x, tuple(names)
