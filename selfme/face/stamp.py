"""Per-clip stamps: a crop is redone only when its inputs or the parameters that shape it changed.

The stamp ``crop.json`` sits inside the clip's output folder, which is written as a whole into a temporary
sibling and renamed at the end (``selfme.io.atomic_dir``): a clip interrupted half-way has no folder and
no stamp, so the next run redoes it. The stamp holds a SHA-256 over the crop fingerprint, the clip's
annotation and the name and content digest of every source file (frames, ground truth), so the same
inputs give the same stamp on any machine (the output folder's DVC hash stays put); it also keeps the
clip's manifest row and warnings so a skipped clip is reported exactly as when it was cropped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from selfme.io import file_sha256

STAMP_NAME = "crop.json"


def file_signature(path: Path) -> list[Any]:
    """[name, SHA-256 of the content] of a file: changes with the content, not with the clock."""
    return [path.name, file_sha256(path)]


def clip_key(*, fingerprint: dict[str, Any], annotation: dict[str, Any], sources: Iterable[Path],
             ground_truth: Path | None) -> str:
    """SHA-256 of everything that determines a clip's crops."""
    payload = {
        "fingerprint": fingerprint,
        "annotation": annotation,
        "sources": [file_signature(p) for p in sources],
        "ground_truth": file_signature(ground_truth) if ground_truth is not None else None,
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def read_stamp(clip_dir: Path) -> dict[str, Any] | None:
    """The stamp of a cropped clip folder, or None (absent or unreadable: the clip is redone)."""
    path = clip_dir / STAMP_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_stamp(clip_dir: Path, *, key: str, row: dict[str, Any], warnings: list[dict[str, str]],
                frames: list[str]) -> None:
    """Write the stamp (call it last, inside the clip's temporary folder)."""
    stamp = {"key": key, "row": row, "warnings": warnings, "frames": frames}
    (clip_dir / STAMP_NAME).write_text(json.dumps(stamp, indent=1, default=str) + "\n", encoding="utf-8")
