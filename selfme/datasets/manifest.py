"""The manifest: one row per ME clip, the contract every later stage reads (see DESIGN.md).

``build_manifest`` applies a protocol to an adapter's rows: sheet checks (subject ids, repeated rows),
label mapping, protocol exclusions, frame folders, apex checks (spotting or midpoint where the sheet has
none or an impossible one, see ``RowBuilder``). Nothing is dropped silently: every sample the sheet has
but the manifest lacks is an exclusion with a reason, and every apex that was not taken from the sheet
is a listed repair.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from selfme.datasets.adapters import Adapter, get_adapter
from selfme.datasets.frames import detect_color, index_frames
from selfme.datasets.protocol import VOCABULARY, class_names, label_mapping, protocol_exclusion
from selfme.datasets.spotting import midpoint, spot_apex
from selfme.io import write_csv, write_json

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["dataset", "subject", "clip", "label", "label_id", "source_label", "onset", "apex",
                    "offset", "apex_source", "frames_dir", "n_frames", "fps", "color"]
EXCLUDED_COLUMNS = ["subject", "clip", "source_label", "reason"]
APEX_POLICIES = ("spot", "midpoint", "drop")


@dataclass
class ManifestResult:
    dataset: str
    protocol: str
    manifest: pd.DataFrame
    excluded: pd.DataFrame
    repairs: list[dict] = field(default_factory=list)

    def report(self) -> dict:
        """Counts a researcher checks first: per class, per subject, exclusions by reason."""
        m = self.manifest
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "classes": list(class_names(self.protocol)),
            "n_samples": int(len(m)),
            "n_subjects": int(m["subject"].nunique()),
            "per_class": {c: int((m["label"] == c).sum()) for c in class_names(self.protocol)},
            "per_subject": {str(k): int(v) for k, v in m.groupby("subject").size().items()},
            "apex_source": {str(k): int(v) for k, v in m["apex_source"].value_counts().items()},
            "color": {str(k): int(v) for k, v in m["color"].value_counts().items()},
            "n_excluded": int(len(self.excluded)),
            "excluded_by_reason": {str(k): int(v) for k, v in self.excluded["reason"].value_counts().items()},
            "apex_repairs": self.repairs,
        }


def sheet_problems(rows: pd.DataFrame) -> pd.Series:
    """Each row's reason to be excluded before anything else ('' for none): the adapter's ``problem``
    (e.g. a subject id that is not one), or a (subject, clip) the sheet lists more than once. An exact
    repeat of an earlier row is excluded and the first kept; copies that disagree are all excluded, as
    nothing tells which annotation is right. Reasons name the sheet rows."""
    problems = rows["problem"].astype(str).copy()
    usable = rows[problems == ""]
    columns = [c for c in rows.columns if c != "problem"]
    for (subject, clip), group in usable.groupby(["subject", "clip"], sort=False):
        if len(group) < 2:
            continue
        numbers = ", ".join(str(n) for n in group.index)
        if len(group[columns].astype(str).drop_duplicates()) == 1:
            for n in group.index[1:]:
                problems[n] = f"duplicate of sheet row {group.index[0]} (same subject, clip and annotation)"
        else:
            for n in group.index:
                problems[n] = (f"{subject} {clip} is listed {len(group)} times with different annotations "
                               f"(sheet rows {numbers}): none is used")
    return problems


class Excluded(Exception):
    """A sheet row that makes no manifest row; the message is the reason listed in *_excluded.csv."""


@dataclass(kw_only=True)
class RowBuilder:
    """Turns one sheet row into a manifest row, or raises Excluded with the reason (module docstring).

    An apex is usable when onset < apex <= offset: a missing one, one outside the clip, or one equal to
    the onset (no onset -> apex motion, which ``selfme predict`` refuses too) is repaired by
    ``apex_missing`` (spot, midpoint) and listed in ``repairs``, or excluded (drop, or when the repair
    lands on the onset again: a two-frame clip's midpoint). A one-frame clip (onset = offset) is
    excluded: it has no motion. So are clips whose onset, apex and offset frames differ in colour mode
    (``_color``): converting them to one mode would hide a frame that is not like the others.
    """

    dataset: str
    adapter: Adapter
    root: Path
    protocol: str
    allow_missing_frames: bool
    apex_missing: str
    folders_found: int = 0
    repairs: list[dict] = field(default_factory=list)
    classes: tuple[str, ...] = field(init=False)
    mapping: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.classes = class_names(self.protocol)
        self.mapping = label_mapping(self.protocol, self.dataset)  # an unknown protocol fails here

    def build(self, row: pd.Series) -> dict:
        label = self._label(row)
        onset, offset = self._span(row)
        frames_dir, frames, color = None, {}, self.adapter.default_color
        if not self.allow_missing_frames:
            frames_dir, frames = self._frames(row, onset, offset)
        apex, apex_source = self._apex(row, frames, onset, offset)
        if frames:
            color = self._color(frames, {"onset": onset, "apex": apex, "offset": offset})
        return {
            "dataset": self.dataset, "subject": row["subject"], "clip": row["clip"], "label": label,
            "label_id": self.classes.index(label), "source_label": row["source_label"], "onset": onset,
            "apex": apex, "offset": offset, "apex_source": apex_source,
            "frames_dir": frames_dir.as_posix() if frames_dir else "",
            "n_frames": sum(1 for n in frames if onset <= n <= offset), "fps": self.adapter.fps, "color": color,
        }

    def _label(self, row: pd.Series) -> str:
        if row["problem"]:
            raise Excluded(row["problem"])
        src = row["source_label"]
        if src not in VOCABULARY[self.dataset]:
            log.warning("%s %s %s: unknown emotion %r", self.dataset, row["subject"], row["clip"], src)
            raise Excluded(f"unknown emotion '{src}'")
        if src not in self.mapping:
            raise Excluded(f"label '{src}' not in protocol {self.protocol}")
        if reason := protocol_exclusion(self.protocol, self.dataset, row["subject"], row["clip"]):
            raise Excluded(reason)
        return self.mapping[src]

    @staticmethod
    def _span(row: pd.Series) -> tuple[int, int]:
        if math.isnan(row["onset"]) or math.isnan(row["offset"]) or row["onset"] > row["offset"]:
            raise Excluded(f"onset/offset not usable frame numbers ({row['onset']}, {row['offset']})")
        if row["onset"] == row["offset"]:
            raise Excluded(f"onset = offset = {int(row['onset'])}: a one-frame clip has no motion")
        return int(row["onset"]), int(row["offset"])

    def _frames(self, row: pd.Series, onset: int, offset: int) -> tuple[Path, dict[int, Path]]:
        for candidate in self.adapter.clip_dir_candidates(self.root, row["subject"], row["clip"], row):
            if candidate.is_dir():
                frames = index_frames(candidate)
                break
        else:
            raise Excluded("clip folder absent")
        self.folders_found += 1
        needed = [onset, offset]
        if not math.isnan(row["apex"]) and onset <= row["apex"] <= offset:
            needed.append(int(row["apex"]))
        missing = [n for n in needed if n not in frames]
        if missing:
            raise Excluded(f"missing frame files {missing} in {candidate}")
        return candidate, frames

    @staticmethod
    def _color(frames: dict[int, Path], keys: dict[str, int]) -> str:
        """The clip's colour (``rgb`` | ``gray``) from its key frames. Key frames whose colour modes differ
        (one grey apex in a colour clip makes a spurious onset -> apex motion) or an unreadable one
        exclude the row; a key frame without a file (a midpoint apex) is left to the crop stage."""
        present = {name: n for name, n in keys.items() if n in frames}
        try:
            colors = {name: detect_color(frames[n]) for name, n in present.items()}
        except ValueError as exc:
            raise Excluded(str(exc)) from exc
        if len(set(colors.values())) > 1:
            listed = ", ".join(f"{name} {frames[present[name]].name} {c}" for name, c in colors.items())
            raise Excluded(f"key frames differ in colour ({listed}) in {frames[keys['onset']].parent}")
        return colors["onset"]

    def _apex(self, row: pd.Series, frames: dict[int, Path], onset: int, offset: int) -> tuple[int, str]:
        """The sheet's apex when usable, else the repaired one (listed in ``repairs``)."""
        apex = row["apex"]
        if not math.isnan(apex) and onset < apex <= offset:
            return int(apex), "annotated"
        if math.isnan(apex):
            why = "apex not annotated"
        elif apex == onset:
            why = f"apex {int(apex)} is the onset frame (no onset -> apex motion)"
        else:
            why = f"apex {int(apex)} outside [{onset}, {offset}]"
        if self.apex_missing == "drop":
            raise Excluded(why)
        numbers = [n for n in frames if onset <= n <= offset]
        if self.apex_missing == "spot" and len(numbers) >= 2:
            try:
                apex, source = numbers[spot_apex([frames[n] for n in numbers])], "spotted"
            except ValueError as exc:  # an unreadable frame, or one of another size
                raise Excluded(f"{why}; spotting failed: {exc}") from exc
        else:
            apex, source = midpoint(onset, offset), "midpoint"
        if apex == onset:
            raise Excluded(f"{why}; the {source} apex is the onset too")
        self.repairs.append({"subject": row["subject"], "clip": row["clip"], "problem": why,
                             "apex": int(apex), "apex_source": source})
        return int(apex), source


def build_manifest(dataset: str, root: str | Path, *, annotations: str | Path | None = None,
                   protocol: str = "megc3", allow_missing_frames: bool = False,
                   apex_missing: str = "spot") -> ManifestResult:
    """Build the manifest of ``dataset`` under ``protocol`` (Sec. 4.1's class mapping)."""
    if apex_missing not in APEX_POLICIES:
        raise ValueError(f"apex_missing must be one of {APEX_POLICIES}, not {apex_missing!r}")
    adapter = get_adapter(dataset)
    root = Path(root)
    builder = RowBuilder(dataset=dataset, adapter=adapter, root=root, protocol=protocol,
                         allow_missing_frames=allow_missing_frames, apex_missing=apex_missing)
    if not allow_missing_frames and not root.is_dir():
        raise FileNotFoundError(f"{dataset} root folder not found: {root}")
    rows = adapter.read_annotations(root, annotations)
    rows["problem"] = sheet_problems(rows)
    kept, excluded = [], []
    for _, row in tqdm(rows.iterrows(), total=len(rows), desc=f"manifest {dataset}", leave=False):
        try:
            kept.append(builder.build(row))
        except Excluded as exc:
            if row["problem"]:
                log.warning("%s %s %s: %s", dataset, row["subject"], row["clip"], exc)
            excluded.append({"subject": row["subject"], "clip": row["clip"],
                             "source_label": row["source_label"], "reason": str(exc)})
    candidates = len(rows) - sum(1 for e in excluded if not e["reason"].startswith(("clip folder", "missing")))
    if not allow_missing_frames and builder.folders_found == 0 and candidates > 0:
        raise FileNotFoundError(
            f"no {dataset} clip folders found under {root} (looked in "
            f"{[str(Path(root, b)) for b in adapter.frame_roots]}); check --root, or pass "
            f"--allow-missing-frames to build a manifest from the sheet alone")
    manifest = pd.DataFrame(kept, columns=MANIFEST_COLUMNS).sort_values(["subject", "clip"], kind="stable")
    result = ManifestResult(dataset, protocol, manifest.reset_index(drop=True),
                            pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS), builder.repairs)
    log.info("%s/%s: %d samples from %d subjects %s; %d excluded %s", dataset, protocol,
             len(result.manifest), result.manifest["subject"].nunique(), result.report()["per_class"],
             len(result.excluded), result.report()["excluded_by_reason"])
    return result


def write_manifest(result: ManifestResult, out_csv: str | Path) -> dict:
    """Write ``<out>.csv``, ``<out>_excluded.csv`` and ``<out>_report.json`` atomically; return the report."""
    out_csv = Path(out_csv)
    report = result.report()
    write_csv(out_csv, result.manifest)
    write_csv(out_csv.with_name(f"{out_csv.stem}_excluded.csv"), result.excluded)
    write_json(out_csv.with_name(f"{out_csv.stem}_report.json"), report)
    return report


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV, checking it has the contract's columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path} (run the prepare stage)")
    frame = pd.read_csv(path, dtype={"subject": str, "clip": str, "frames_dir": str})
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} is not a manifest: columns {missing} are missing")
    frame["frames_dir"] = frame["frames_dir"].fillna("")
    return frame
