"""The SynthME coding sheet: CASME II's columns, written as a byte-reproducible xlsx."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from selfme.io import atomic_path

#: Column order of CASME II's coding sheet (both public releases).
SHEET_COLUMNS = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                 "Estimated Emotion"]
SHEET_NAME = "CASME2-coding-synthme.xlsx"

_FIXED_TIME = "2000-01-01T00:00:00Z"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def coding_frame(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """Rows (dicts keyed by ``SHEET_COLUMNS``) as the sheet's DataFrame, sorted by subject and clip."""
    frame = pd.DataFrame(list(rows), columns=SHEET_COLUMNS)
    for col in ("Subject", "OnsetFrame", "ApexFrame", "OffsetFrame"):
        frame[col] = frame[col].astype(int)
    return frame.sort_values(["Subject", "Filename"], kind="stable").reset_index(drop=True)


def deterministic_xlsx(data: bytes) -> bytes:
    """Rewrite an xlsx so it depends only on its content.

    openpyxl stamps docProps/core.xml with the current time and every zip member with the time of
    writing; both are replaced by fixed values (members keep their order and compression).
    """
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            payload = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = payload.decode("utf-8")
                text = re.sub(r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                              rf"\g<1>{_FIXED_TIME}\g<3>", text)
                payload = text.encode("utf-8")
            fixed = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, payload)
    return out.getvalue()


def write_coding_sheet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Write the sheet (one worksheet 'Sheet1', header on row 1) atomically and reproducibly."""
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        frame.to_excel(writer, index=False, sheet_name="Sheet1")
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(deterministic_xlsx(buffer.getvalue()))
