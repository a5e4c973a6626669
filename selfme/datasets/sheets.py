"""Reading coding sheets (xlsx or csv) whose header row and column names vary between releases."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

#: The columns every adapter's ``read_annotations`` returns; ``problem`` says why a row cannot be used
#: as read (a subject id that is not one), '' when it can.
ANNOTATION_COLUMNS = ["subject", "clip", "source_label", "onset", "apex", "offset", "action_units", "problem"]


def normalise_name(name: object) -> str:
    """'Onset Frame' -> 'onsetframe', 'Estimated Emotion' -> 'estimatedemotion'."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _read_raw(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in {".xlsx", ".xlsm", ".xls"}:
        return pd.read_excel(path, header=None, dtype=object)
    return pd.read_csv(path, header=None, dtype=object)


def read_sheet(path: str | Path, aliases: dict[str, tuple[str, ...]], *, scan_rows: int = 40) -> pd.DataFrame:
    """Read a coding sheet and return the columns named in ``aliases`` under their canonical names.

    The header row is found by content (the first of the first ``scan_rows`` rows that holds every
    required column), so SAMM's header on row 13 and CASME II's on row 1 read the same way.
    ``aliases`` maps canonical name -> accepted normalised header names; a canonical name ending in
    '?' is optional (filled with '' when absent). A header without sample rows is an error. The index
    (``sheet_row``) is each row's number as a spreadsheet shows it, so a message can name the row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation sheet not found: {path}")
    try:
        raw = _read_raw(path)
    except Exception as exc:  # openpyxl / csv parser errors: say which file
        raise ValueError(f"cannot read annotation sheet {path}: {exc}") from exc
    required = {k: v for k, v in aliases.items() if not k.endswith("?")}
    for row in range(min(scan_rows, len(raw))):
        header = [normalise_name(v) for v in raw.iloc[row].tolist()]
        if all(any(a in header for a in names) for names in required.values()):
            break
    else:
        wanted = ", ".join(names[0] for names in required.values())
        raise ValueError(f"{path}: no header row with the columns {wanted} in its first {scan_rows} rows")
    body = raw.iloc[row + 1:]
    body = body.set_axis(body.index + 1).rename_axis("sheet_row")  # 0-based raw rows -> spreadsheet rows
    out = {}
    for canonical, names in aliases.items():
        key = canonical.rstrip("?")
        idx = next((header.index(a) for a in names if a in header), None)
        out[key] = body.iloc[:, idx] if idx is not None else pd.Series("", index=body.index, dtype=object)
    frame = pd.DataFrame(out)
    # Drop blank trailing rows (xlsx sheets often have formatted empty rows).
    first = next(iter(required)).rstrip("?")
    frame = frame[frame[first].notna() & (frame[first].astype(str).str.strip() != "")]
    if frame.empty:
        raise ValueError(f"{path}: the sheet has a header (row {row + 1}) but no sample rows")
    return frame


def to_frame_number(value: object) -> float:
    """A sheet cell as a frame number, NaN for '/', '', '-' and other non-numbers (e.g. CASME II's '/')."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return float("nan")
    try:
        number = float(str(value).strip())
    except ValueError:
        return float("nan")
    return number if number.is_integer() else float("nan")
