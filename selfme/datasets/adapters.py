"""Dataset adapters: each turns a dataset's sheet (or folder layout) and frame folders into rows.

An adapter knows three things about its dataset: where the coding sheet is and how to read it
(``read_annotations``), where a clip's frames live (``clip_dir_candidates``), and its constants (fps,
default colour). Everything protocol-related happens in :mod:`selfme.datasets.manifest`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import ClassVar

import pandas as pd

from selfme.datasets.frames import index_frames
from selfme.datasets.sheets import ANNOTATION_COLUMNS, read_sheet, to_frame_number

log = logging.getLogger(__name__)


class Adapter:
    """Base class: a sheet-driven dataset whose clips live at ``<base>/<subject>/<clip>/``."""

    name: ClassVar[str]
    fps: ClassVar[float]
    default_color: ClassVar[str] = "rgb"
    sheet_names: ClassVar[tuple[str, ...]] = ()
    #: canonical column -> accepted normalised sheet headers (CASME II, SAMM and CAS(ME)^3 spellings);
    #: a name ending in '?' is optional.
    aliases: ClassVar[dict[str, tuple[str, ...]]] = {
        "subject": ("subject",),
        "clip": ("filename",),
        "onset": ("onsetframe", "onset"),
        "apex": ("apexframe", "apex"),
        "offset": ("offsetframe", "offset"),
        "action_units?": ("actionunits", "aus", "au"),
        "source_label": ("estimatedemotion", "emotion"),
    }
    frame_roots: ClassVar[tuple[str, ...]] = ("",)  # sub-folders of root that may hold subject folders

    def find_sheet(self, root: Path, annotations: str | Path | None) -> Path:
        """The sheet to read: ``annotations`` when given, else a known file name under ``root``."""
        if annotations:
            path = Path(annotations)
            if not path.is_file():
                raise FileNotFoundError(f"annotation sheet not found: {path}")
            return path
        for name in self.sheet_names:
            for found in sorted(Path(root).glob(f"**/{name}")):
                return found
        raise FileNotFoundError(f"no {self.name} annotation sheet ({' or '.join(self.sheet_names)}) under "
                                f"{root}; pass --annotations FILE")

    def subject_id(self, value: object) -> str:
        return str(value).strip()

    def checked_subject(self, value: object) -> tuple[str, str]:
        """(subject id, '') or, for a cell that is not a subject id of this dataset, (the cell, why)."""
        try:
            return self.subject_id(value), ""
        except ValueError as exc:
            return str(value).strip(), str(exc)

    def clip_id(self, row: pd.Series) -> str:
        return str(row["clip"]).strip()

    def read_annotations(self, root: Path, annotations: str | Path | None) -> pd.DataFrame:
        """Rows with ANNOTATION_COLUMNS, indexed by sheet row; onset/apex/offset are floats (NaN where not
        a frame number); a row whose subject is no subject id keeps the cell and says why in ``problem``."""
        sheet = read_sheet(self.find_sheet(root, annotations), self.aliases)
        checked = [self.checked_subject(v) for v in sheet["subject"]]
        sheet["subject"] = [subject for subject, _ in checked]
        sheet["problem"] = [f"sheet row {n}: {why}" if why else "" for n, (_, why) in zip(sheet.index, checked)]
        sheet["clip"] = sheet.apply(self.clip_id, axis=1)
        sheet["source_label"] = sheet["source_label"].astype(str).str.strip().str.lower()
        for col in ("onset", "apex", "offset"):
            sheet[col] = sheet[col].map(to_frame_number)
        sheet["action_units"] = sheet["action_units"].fillna("").astype(str).str.strip()
        return sheet[ANNOTATION_COLUMNS]

    def clip_dir_candidates(self, root: Path, subject: str, clip: str, row: pd.Series) -> list[Path]:
        return [Path(root, base, subject, clip) for base in self.frame_roots]


class CASME2(Adapter):
    """CASME II: both public sheets (20140508, 20190701), raw (``subXX/EPxx_yy/imgN.jpg``) and
    cropped (``Cropped/subXX/EPxx_yy/reg_imgN.jpg``) releases."""

    name = "casme2"
    fps = 200.0
    sheet_names = ("CASME2-coding-20190701.xlsx", "CASME2-coding-20140508.xlsx", "CASME2-coding-*.xlsx")
    frame_roots = ("", "CASME2_RAW_selected", "CASME2-RAW", "CASME2_RAW", "Cropped",
                   "CASME2_Cropped/Cropped", "CASME2-Cropped/Cropped")

    def subject_id(self, value: object) -> str:
        text = str(value).strip().lower().removeprefix("sub")
        if not text.isdigit():
            raise ValueError(f"CASME II subject {value!r} is not a number or 'subNN'")
        return f"sub{int(text):02d}"


class SynthME(CASME2):
    """SynthME, the embedded synthetic dataset: written in CASME II's layout, read by CASME II's rules."""

    name = "synthme"
    sheet_names = ("CASME2-coding-synthme.xlsx",)


class SAMM(Adapter):
    """SAMM: header on row 13 of ``SAMM_Micro_FACS_Codes_v2.xlsx``, zero-padded subjects, grey frames."""

    name = "samm"
    fps = 200.0
    default_color = "gray"
    sheet_names = ("SAMM_Micro_FACS_Codes_v2.xlsx", "SAMM_Micro_FACS_Codes*.xlsx")
    frame_roots = ("", "SAMM")

    def subject_id(self, value: object) -> str:
        text = str(value).strip()
        return f"{int(float(text)):03d}" if text.replace(".", "", 1).isdigit() else text


class CASME3A(Adapter):
    """CAS(ME)^3 part A: ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``; frames are indexed in the long
    recording ``<subject>/<filename>/color/<N>.jpg``, so a clip is named ``<filename>_<onset>``."""

    name = "casme3a"
    fps = 30.0
    sheet_names = ("cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", "cas(me)3_part_A*.xlsx")
    frame_roots = ("", "part_A", "data/part_A")

    def clip_id(self, row: pd.Series) -> str:
        onset = to_frame_number(row["onset"])
        suffix = f"_{int(onset)}" if onset == onset else ""
        return f"{str(row['clip']).strip()}{suffix}"

    def clip_dir_candidates(self, root: Path, subject: str, clip: str, row: pd.Series) -> list[Path]:
        video = clip.rsplit("_", 1)[0]
        return [Path(root, base, subject, video, sub) for base in self.frame_roots for sub in ("color", "")]


class SMICHS(Adapter):
    """SMIC-HS: no sheet; ``HS/sX/micro/{negative,positive,surprise}/sX_yy_NN/`` with numbered frames.

    Onset and offset are the first and last frames; there is no apex annotation (NaN here, so the
    manifest spots it or takes the midpoint).
    """

    name = "smic_hs"
    fps = 100.0
    _clip = re.compile(r"^s(\d+)_([a-z]+)_(\d+)$", re.IGNORECASE)

    def find_layout(self, root: Path) -> Path:
        for base in (root / "HS", root / "SMIC_all_raw" / "HS", root):
            if base.is_dir() and any(base.glob("s*/micro")):
                return base
        raise FileNotFoundError(f"no SMIC-HS layout under {root}: expected HS/sX/micro/<class>/<clip>/")

    def read_annotations(self, root: Path, annotations: str | Path | None) -> pd.DataFrame:
        if annotations:
            log.warning("SMIC-HS has no coding sheet; ignoring --annotations %s", annotations)
        base = self.find_layout(Path(root))
        rows = []
        for clip_dir in sorted(base.glob("s*/micro/*/*")):
            match = self._clip.match(clip_dir.name)
            if not clip_dir.is_dir() or not match:
                continue
            numbers = list(index_frames(clip_dir))
            subject = f"s{int(match.group(1)):02d}"
            rows.append({
                "subject": subject,
                "clip": f"{subject}_{match.group(2).lower()}_{match.group(3)}",
                "source_label": clip_dir.parent.name.strip().lower(),
                "onset": float(numbers[0]) if numbers else float("nan"),
                "apex": float("nan"),
                "offset": float(numbers[-1]) if numbers else float("nan"),
                "action_units": "",
                "problem": "",
                "_dir": clip_dir,
            })
        if not rows:
            raise FileNotFoundError(f"no SMIC-HS clip folders under {base}")
        self._dirs = {(r["subject"], r["clip"]): r.pop("_dir") for r in rows}
        return pd.DataFrame(rows)[ANNOTATION_COLUMNS]

    def clip_dir_candidates(self, root: Path, subject: str, clip: str, row: pd.Series) -> list[Path]:
        return [self._dirs[(subject, clip)]]


ADAPTERS: dict[str, type[Adapter]] = {a.name: a for a in (SynthME, CASME2, SMICHS, SAMM, CASME3A)}


def get_adapter(dataset: str) -> Adapter:
    if dataset not in ADAPTERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(ADAPTERS)}")
    return ADAPTERS[dataset]()
