"""Per-sample prediction logs: the MEGC2019 format and the per-subject list format of PyTorch re-runs.

MEGC2019 format: a header line ``<db> <subject>`` then one line per sample ``<clip> <gt> <pred>``; dbs
are ``casme2``, ``smic``, ``samm``. Subject-list format: blocks of ``Subject: <s>``,
``Predicted   : [..]`` and ``Ground Truth: [..]`` lines (running UF1/UAR lines are ignored).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd

from selfme.io import write_text

LOG_COLUMNS = ["db", "subject", "clip", "gt", "pred"]
#: Our dataset names -> MEGC2019 log database names.
MEGC_DB = {"casme2": "casme2", "smic_hs": "smic", "samm": "samm"}


def read_megc_log(path: str | Path) -> pd.DataFrame:
    """Parse a MEGC2019 log into rows (db, subject, clip, gt, pred); malformed lines are errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"log not found: {path}")
    rows, db, subject = [], None, None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2:
            db, subject = parts
        elif len(parts) == 3 and db is not None:
            try:
                rows.append((db, subject, parts[0], int(parts[1]), int(parts[2])))
            except ValueError:
                raise ValueError(f"{path}:{number}: labels must be integers: {line!r}") from None
        else:
            raise ValueError(f"{path}:{number}: expected '<db> <subject>' or '<clip> <gt> <pred>': {line!r}")
    if not rows:
        raise ValueError(f"{path}: no samples")
    return pd.DataFrame(rows, columns=LOG_COLUMNS)


def write_megc_log(frame: pd.DataFrame, path: str | Path) -> None:
    """Write rows with LOG_COLUMNS in MEGC2019 format, grouped by (db, subject) in order of appearance."""
    lines = []
    for (db, subject), group in frame.groupby(["db", "subject"], sort=False):
        lines.append(f"{db} {subject}")
        lines.extend(f"{c} {int(g)} {int(p)}" for c, g, p in zip(group["clip"], group["gt"], group["pred"]))
    write_text(path, "\n".join(lines) + "\n")


_BLOCK = re.compile(r"Subject:\s*(\S+)\s*Predicted\s*:\s*(\[[^\]]*\])\s*Ground Truth\s*:\s*(\[[^\]]*\])")


def read_subject_list_log(path: str | Path) -> pd.DataFrame:
    """Parse the per-subject list log into rows (db='', subject, clip=index, gt, pred)."""
    text = Path(path).read_text(encoding="utf-8")
    rows = []
    for subject, pred, gt in _BLOCK.findall(text):
        pred, gt = ast.literal_eval(pred), ast.literal_eval(gt)
        if len(pred) != len(gt):
            raise ValueError(f"{path}: subject {subject} has {len(pred)} predictions for {len(gt)} labels")
        rows.extend(("", subject, str(i), int(g), int(p)) for i, (g, p) in enumerate(zip(gt, pred)))
    if not rows:
        raise ValueError(f"{path}: no 'Subject: / Predicted: / Ground Truth:' blocks")
    return pd.DataFrame(rows, columns=LOG_COLUMNS)
