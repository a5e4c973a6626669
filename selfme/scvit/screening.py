"""A sample's file as an input array, and the screening that excludes samples whose file cannot be one.

A motion sample is a .npy displacement field [H, W, 2] (finite, numeric); an image sample an 8-bit
motion image. ``screen`` reads every file of a source once and splits its samples into the usable ones
and the excluded ones, each with the path as the source lists it and the reason (EXCLUDED_COLUMNS).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from selfme.io import read_image
from selfme.scvit.inputs import check_motion

log = logging.getLogger(__name__)

#: Columns of the excluded samples: ``path`` as the source lists it, ``reason`` what is wrong with it.
EXCLUDED_COLUMNS = ["dataset", "subject", "clip", "path", "reason"]
NPY_MAGIC = b"\x93NUMPY"


def no_exclusions() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in EXCLUDED_COLUMNS})


def join_exclusions(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several exclusion lists as one (EXCLUDED_COLUMNS), in order."""
    kept = [p[EXCLUDED_COLUMNS] for p in parts if len(p)]
    return pd.concat(kept, ignore_index=True) if kept else no_exclusions()


class BadSampleFile(ValueError):
    """A sample's file is not a usable input; the message names the file, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def _brief(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__


def read_sample(path: str | Path, kind: str) -> np.ndarray:
    """A sample's array: a finite displacement field float32 [H, W, 2] from a .npy (``motion``) or an
    8-bit motion image (``image``); BadSampleFile naming the file and what is wrong otherwise."""
    if kind == "image":
        try:
            return read_image(path)
        except FileNotFoundError:
            raise
        except ValueError as exc:
            raise BadSampleFile(path, "unreadable or corrupt image") from exc
    try:
        with open(path, "rb") as fh:
            if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
                raise BadSampleFile(path, "not a .npy file (no NumPy header)")
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, BadSampleFile):
            raise
        raise BadSampleFile(path, f"not a readable .npy array ({_brief(exc)})") from exc
    try:
        return check_motion(array)
    except ValueError as exc:
        raise BadSampleFile(path, str(exc)) from exc


def screen(frame: pd.DataFrame, listed: Sequence[str], kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` (dataset, subject, clip, label_id, path) into the samples whose file reads as an
    input and the excluded ones (EXCLUDED_COLUMNS, the path as ``listed``)."""
    reasons = []
    for path in frame["path"]:
        try:
            read_sample(path, kind)
            reasons.append("")
        except BadSampleFile as exc:
            reasons.append(exc.reason)
    bad = np.array([bool(r) for r in reasons], dtype=bool)
    excluded = pd.DataFrame({"dataset": frame["dataset"].astype(str).values[bad],
                             "subject": frame["subject"].astype(str).values[bad],
                             "clip": frame["clip"].astype(str).values[bad],
                             "path": np.asarray(listed, dtype=object)[bad],
                             "reason": np.asarray(reasons, dtype=object)[bad]})
    return frame[~bad], excluded


def warn_excluded(excluded: pd.DataFrame, source: Path) -> None:
    if excluded.empty:
        return
    shown = "; ".join(f"{r.dataset}/{r.subject}/{r.clip} ({r.path + ': ' if r.path else ''}{r.reason})"
                      for r in excluded.head(3).itertuples(index=False))
    log.warning("%s: %d sample(s) excluded: %s%s", source, len(excluded), shown, "; ..." if len(excluded) > 3 else "")
