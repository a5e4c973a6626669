"""Where LOSO's samples come from, and their input tensors.

Three sources, told apart by what ``motions`` points at:

* a motion index CSV (the extract stage's): manifest columns plus ``motion_path``, a float16/float32
  .npy displacement field [H, W, 2] per clip (a folder holding ``index.csv`` works too);
* a face-crop folder with ``manifest.csv`` whose ``ground_truth`` column names SynthME's ground-truth
  motion per clip (the stand-in until the extract stage runs);
* a folder of precomputed motion images ``<subject>_<clip>.png`` plus a labels CSV, either headerless
  ``db, subject, clip, label`` (MEGC2019's composite ground truth) or with a header naming
  ``db``/``dataset``, ``subject``, ``clip`` and ``label``/``label_id`` (class ids or class names).

Every sample carries ``dataset`` (the name its source gives it: the motion index's ``dataset`` column,
the labels CSV's db; LOSO writes its folds under that name) and ``db`` (the MEGC2019 log name,
``smic_hs`` -> ``smic``). A sample is identified by (dataset, subject, clip): subjects of different
datasets are different people even where their ids collide. Several datasets may be loaded at once
(the composite protocol pools them); ``combine_samples`` joins sources loaded one by one.

A sample whose file cannot be an input (an index row with an empty motion path, a .npy that is not a
finite [H, W, 2] displacement field, an unreadable image) is excluded when the source is loaded, with a
warning and its reason in ``Samples.excluded`` (LOSO lists them in ``<out>/<dataset>/excluded.csv``), so
the kept samples, and only they, make the folds and key their results. A listed file that does not
exist is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from selfme.cache import sha256_hex
from selfme.datasets import class_names
from selfme.datasets.frames import IMAGE_SUFFIXES, resolve_manifest_path
from selfme.io import file_sha256
from selfme.metrics.logs import MEGC_DB
from selfme.scvit.inputs import IMAGE_CHANNELS, InputConfig, image_to_input, motion_to_input
from selfme.scvit.screening import join_exclusions, no_exclusions, read_sample, screen, warn_excluded

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = ["dataset", "db", "subject", "clip", "label_id", "path"]
SAMPLE_KEY = ["dataset", "subject", "clip"]
@dataclass(frozen=True)
class Samples:
    """One row per clip (dataset, db, subject, clip, label_id, path); ``kind`` is ``motion`` or ``image``;
    ``excluded``: the source's samples left out (EXCLUDED_COLUMNS)."""

    frame: pd.DataFrame
    kind: str
    excluded: pd.DataFrame = field(default_factory=no_exclusions)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def datasets(self) -> list[str]:
        """The datasets of the samples, in order of first appearance."""
        return list(dict.fromkeys(self.frame["dataset"].astype(str)))

    def digest(self) -> str:
        """SHA-256 over every sample's identity, label and file content (keys the fold results)."""
        def chunks():
            yield self.kind
            for row in self.frame.itertuples(index=False):
                yield f"{row.dataset}|{row.db}|{row.subject}|{row.clip}|{int(row.label_id)}|"
                yield bytes.fromhex(file_sha256(row.path))
        return sha256_hex(chunks())

    def subset(self, datasets: Sequence[str]) -> "Samples":
        """The samples of the named datasets (in their original order)."""
        names = [str(d) for d in datasets]
        keep = self.frame["dataset"].astype(str).isin(names)
        excluded = self.excluded[self.excluded["dataset"].astype(str).isin(names)].reset_index(drop=True)
        return Samples(self.frame[keep].reset_index(drop=True), self.kind, excluded)

    def with_dataset(self, name: str) -> "Samples":
        """Every sample renamed to dataset ``name`` (a pipeline stage's key), db after MEGC2019."""
        return Samples(self.frame.assign(dataset=name, db=MEGC_DB.get(name, name)), self.kind,
                       self.excluded.assign(dataset=name))


def combine_samples(parts: Sequence[Samples]) -> Samples:
    """Samples of several sources in one list (the composite protocol's pool)."""
    if not parts:
        raise ValueError("no samples to combine")
    kinds = {p.kind for p in parts}
    if len(kinds) > 1:
        raise ValueError(f"cannot pool samples of different kinds {sorted(kinds)}")
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    if frame.duplicated(SAMPLE_KEY).any():
        first = frame[frame.duplicated(SAMPLE_KEY)].iloc[0]
        raise ValueError(f"sample {first['dataset']}/{first['subject']}/{first['clip']} is listed twice")
    return Samples(frame, parts[0].kind, join_exclusions([p.excluded for p in parts]))


def _motion_files(paths: pd.Series, index: Path) -> list[Path]:
    """The index's motion files (see :func:`resolve_manifest_path`); a FileNotFoundError when any is missing."""
    out = [resolve_manifest_path(p, index) for p in paths.astype(str)]
    missing = [p for p in out if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} motion file(s) missing, e.g. {missing[0]}")
    return out


def _names(dataset: str | Sequence[str] | None) -> list[str] | None:
    """A dataset choice as a list: None (all), one name, a list, or a comma-separated string."""
    if dataset is None:
        return None
    items = [dataset] if isinstance(dataset, str) else list(dataset)
    return [n.strip() for item in items for n in str(item).split(",") if n.strip()]


def _db_matches(db: pd.Series, dataset: str | Sequence[str]) -> pd.Series:
    """Rows whose dataset is one of ``dataset`` under any of its names (smic_hs is MEGC2019's smic)."""
    names = set()
    for name in _names(dataset) or []:
        names |= {name, MEGC_DB.get(name, name)} | {k for k, v in MEGC_DB.items() if v == name}
    return db.astype(str).isin(names)


def _finish(frame: pd.DataFrame, kind: str, dataset: str | Sequence[str] | None,
            excluded: pd.DataFrame | None = None) -> Samples:
    if dataset is not None:
        frame = frame[_db_matches(frame["dataset"], dataset)]
    excluded = no_exclusions() if excluded is None else excluded.reset_index(drop=True)
    if frame.empty:
        also = f" ({len(excluded)} excluded)" if len(excluded) else ""
        raise ValueError(f"no samples{' for dataset(s) ' + repr(dataset) if dataset else ''}{also}")
    if frame.duplicated(SAMPLE_KEY).any():
        first = frame[frame.duplicated(SAMPLE_KEY)].iloc[0]
        raise ValueError(f"duplicate (dataset, subject, clip) rows in the sample list, e.g. "
                         f"{first['dataset']}/{first['subject']}/{first['clip']}")
    frame = frame.assign(dataset=frame["dataset"].astype(str),
                         db=frame["dataset"].map(lambda d: MEGC_DB.get(str(d), str(d))))
    return Samples(frame[SAMPLE_COLUMNS].reset_index(drop=True), kind, excluded)


def motion_index_samples(index: str | Path, *, dataset: str | Sequence[str] | None = None,
                         column: str = "motion_path") -> Samples:
    """Samples from a CSV with ``subject, clip, label_id`` and a column of .npy motion paths; rows with an
    empty path and files that are not finite [H, W, 2] fields are excluded (listed, with a warning)."""
    index = Path(index)
    if not index.is_file():
        raise FileNotFoundError(f"motion index not found: {index}")
    frame = pd.read_csv(index, dtype={"subject": str, "clip": str})
    missing = [c for c in ("subject", "clip", "label_id", column) if c not in frame.columns]
    if missing:
        raise ValueError(f"{index} lacks the column(s) {missing}")
    names = _names(dataset)
    default = names[0] if names and len(names) == 1 else "unknown"
    db = frame["dataset"].astype(str) if "dataset" in frame.columns else pd.Series(default, index=frame.index)
    if dataset is not None:
        frame, db = frame[_db_matches(db, dataset)], db[_db_matches(db, dataset)]
    empty = frame[column].isna().values | (frame[column].astype(str).str.strip() == "").values
    no_path = pd.DataFrame({"dataset": db.values[empty], "subject": frame["subject"].values[empty],
                            "clip": frame["clip"].values[empty], "path": "",
                            "reason": f"empty {column} in {index.name}"})
    frame, db = frame[~empty], db[~empty]
    listed = frame[column].astype(str).tolist()
    out = pd.DataFrame({"dataset": db.values, "subject": frame["subject"].values, "clip": frame["clip"].values,
                        "label_id": frame["label_id"].astype(int).values,
                        "path": [str(p) for p in _motion_files(frame[column], index)]})
    out, unreadable = screen(out, listed, "motion")
    excluded = join_exclusions([no_path, unreadable])
    warn_excluded(excluded, index)
    return _finish(out, "motion", None, excluded)


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


def image_samples(folder: str | Path, labels: str | Path, *, dataset: str | Sequence[str] | None = None,
                  protocol: str = "megc3") -> Samples:
    """Samples from a folder of ``<subject>_<clip>.png`` motion images and a labels CSV.

    Every labelled sample of a chosen dataset needs its image; with no choice (``dataset`` None) a
    dataset of the labels without any image in the folder is left out (logged), so MEGC2019's
    composite list works on a folder holding only some of its databases."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"motion image folder not found: {folder}")
    frame = read_labels(labels, protocol=protocol).rename(columns={"db": "dataset"})
    if dataset is not None:
        frame = frame[_db_matches(frame["dataset"], dataset)]
    paths = [next((str(folder / f"{s}_{c}{x}") for x in IMAGE_SUFFIXES if (folder / f"{s}_{c}{x}").is_file()), "")
             for s, c in zip(frame["subject"], frame["clip"])]
    frame = frame.assign(path=paths)
    if dataset is None:
        found = frame.groupby("dataset", sort=False)["path"].apply(lambda p: (p != "").any())
        for name in found.index[~found.values]:
            log.warning("%s: %d labelled sample(s) and no image of them in %s: left out", name,
                        int((frame["dataset"] == name).sum()), folder)
        frame = frame[frame["dataset"].isin(found.index[found.values])]
        if frame.empty:
            raise FileNotFoundError(f"no labelled sample has an image <subject>_<clip>.png in {folder}")
    missing = frame[frame["path"] == ""]
    if len(missing):
        raise FileNotFoundError(f"{len(missing)} labelled sample(s) have no image in {folder}, e.g. "
                                f"{missing['subject'].iloc[0]}_{missing['clip'].iloc[0]}.png")
    frame, excluded = screen(frame, [Path(p).name for p in frame["path"]], "image")
    warn_excluded(excluded, folder)
    return _finish(frame, "image", dataset, excluded)


def load_samples(motions: str | Path, *, labels: str | Path | None = None,
                 dataset: str | Sequence[str] | None = None, protocol: str = "megc3") -> Samples:
    """Dispatch on what ``motions`` is (see the module docstring); ``dataset``: one name, several (a
    list or ``casme2,smic``) or None for every dataset the source holds. ``protocol``: the class
    protocol that names the labels (megc3)."""
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
    """Input tensor [N, C, img_size, img_size] of every sample, and its channel names (a file that has
    become unreadable since loading raises BadSampleFile naming it)."""
    tensors = []
    for path in samples.frame["path"]:
        array = read_sample(path, samples.kind)
        tensors.append(motion_to_input(array, config) if samples.kind == "motion" else image_to_input(array, config))
    x = torch.stack(tensors)
    if samples.kind == "motion":
        names = config.channels
    else:
        names = IMAGE_CHANNELS if x.shape[1] == 3 else tuple(f"c{i}" for i in range(x.shape[1]))
    return x, tuple(names)
