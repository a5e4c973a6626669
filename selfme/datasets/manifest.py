"""The manifest: one row per ME clip, the contract every later stage reads (see DESIGN.md).

``build_manifest`` applies a protocol to an adapter's rows: label mapping, protocol exclusions, frame
folders, apex checks (spotting or midpoint where the sheet has none or an impossible one). Nothing is
dropped silently: every sample the sheet has but the manifest lacks is an exclusion with a reason,
and every apex that was not taken from the sheet is a listed repair.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from selfme.datasets.adapters import get_adapter
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


def _resolve_frames(adapter, root: Path, row: pd.Series) -> tuple[Path | None, dict[int, Path]]:
    for candidate in adapter.clip_dir_candidates(root, row["subject"], row["clip"], row):
        if candidate.is_dir():
            return candidate, index_frames(candidate)
    return None, {}


def _fix_apex(row: pd.Series, frames: dict[int, Path], policy: str) -> tuple[int | None, str, str]:
    """Return (apex, apex_source, why) for a row whose sheet apex is missing or outside the clip."""
    onset, offset = int(row["onset"]), int(row["offset"])
    apex = row["apex"]
    why = "apex not annotated" if math.isnan(apex) else f"apex {int(apex)} outside [{onset}, {offset}]"
    if policy == "drop":
        return None, "", why
    in_clip = [frames[n] for n in frames if onset <= n <= offset]
    if policy == "spot" and len(in_clip) >= 2:
        numbers = [n for n in frames if onset <= n <= offset]
        return numbers[spot_apex(in_clip)], "spotted", why
    return midpoint(onset, offset), "midpoint", why


def build_manifest(dataset: str, root: str | Path, *, annotations: str | Path | None = None,
                   protocol: str = "megc3", allow_missing_frames: bool = False,
                   apex_missing: str = "spot") -> ManifestResult:
    """Build the manifest of ``dataset`` under ``protocol`` (Sec. 4.1's class mapping)."""
    if apex_missing not in APEX_POLICIES:
        raise ValueError(f"apex_missing must be one of {APEX_POLICIES}, not {apex_missing!r}")
    adapter = get_adapter(dataset)
    classes = class_names(protocol)
    mapping = label_mapping(protocol, dataset)
    root = Path(root)
    if not allow_missing_frames and not root.is_dir():
        raise FileNotFoundError(f"{dataset} root folder not found: {root}")
    rows = adapter.read_annotations(root, annotations)
    rows["problem"] = sheet_problems(rows)

    kept, excluded, repairs, folders_found = [], [], [], 0

    def exclude(row: pd.Series, reason: str) -> None:
        excluded.append({"subject": row["subject"], "clip": row["clip"],
                         "source_label": row["source_label"], "reason": reason})

    for _, row in tqdm(rows.iterrows(), total=len(rows), desc=f"manifest {dataset}", leave=False):
        if row["problem"]:
            log.warning("%s %s %s: %s", dataset, row["subject"], row["clip"], row["problem"])
            exclude(row, row["problem"])
            continue
        src = row["source_label"]
        if src not in VOCABULARY[dataset]:
            log.warning("%s %s %s: unknown emotion %r", dataset, row["subject"], row["clip"], src)
            exclude(row, f"unknown emotion '{src}'")
            continue
        if src not in mapping:
            exclude(row, f"label '{src}' not in protocol {protocol}")
            continue
        if reason := protocol_exclusion(protocol, dataset, row["subject"], row["clip"]):
            exclude(row, reason)
            continue
        if math.isnan(row["onset"]) or math.isnan(row["offset"]) or row["onset"] > row["offset"]:
            exclude(row, f"onset/offset not usable frame numbers ({row['onset']}, {row['offset']})")
            continue
        frames_dir, frames, color = None, {}, adapter.default_color
        if not allow_missing_frames:
            frames_dir, frames = _resolve_frames(adapter, root, row)
            if frames_dir is None:
                exclude(row, "clip folder absent")
                continue
            folders_found += 1
            needed = [int(row["onset"]), int(row["offset"])]
            if not math.isnan(row["apex"]) and row["onset"] <= row["apex"] <= row["offset"]:
                needed.append(int(row["apex"]))
            missing = [n for n in needed if n not in frames]
            if missing:
                exclude(row, f"missing frame files {missing} in {frames_dir}")
                continue
            color = detect_color(frames[int(row["onset"])])
        apex, apex_source = row["apex"], "annotated"
        if math.isnan(apex) or not row["onset"] <= apex <= row["offset"]:
            apex, apex_source, why = _fix_apex(row, frames, apex_missing)
            if apex is None:
                exclude(row, why)
                continue
            repairs.append({"subject": row["subject"], "clip": row["clip"], "problem": why,
                            "apex": int(apex), "apex_source": apex_source})
        label = mapping[src]
        in_clip = sum(1 for n in frames if row["onset"] <= n <= row["offset"])
        kept.append({
            "dataset": dataset, "subject": row["subject"], "clip": row["clip"], "label": label,
            "label_id": classes.index(label), "source_label": src, "onset": int(row["onset"]),
            "apex": int(apex), "offset": int(row["offset"]), "apex_source": apex_source,
            "frames_dir": frames_dir.as_posix() if frames_dir else "", "n_frames": in_clip,
            "fps": adapter.fps, "color": color,
        })
    candidates = len(rows) - sum(1 for e in excluded if not e["reason"].startswith(("clip folder", "missing")))
    if not allow_missing_frames and folders_found == 0 and candidates > 0:
        raise FileNotFoundError(
            f"no {dataset} clip folders found under {root} (looked in "
            f"{[str(Path(root, b)) for b in adapter.frame_roots]}); check --root, or pass "
            f"--allow-missing-frames to build a manifest from the sheet alone")
    manifest = pd.DataFrame(kept, columns=MANIFEST_COLUMNS).sort_values(["subject", "clip"], kind="stable")
    result = ManifestResult(dataset, protocol, manifest.reset_index(drop=True),
                            pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS), repairs)
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
