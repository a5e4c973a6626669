"""Per-clip stamps: a crop is redone only when its inputs, the parameters that shape it or the code that
computes it changed.

The stamp ``crop.json`` sits inside the clip's output folder, which is written as a whole into a temporary
sibling and renamed at the end (``selfme.io.atomic_dir``): a clip interrupted half-way has no folder and
no stamp, so the next run redoes it. The stamp is a record of ``selfme.cache``: its key covers the crop
fingerprint, the clip's annotation, the name and content digest of every source file (frames, ground
truth) and the code digest of the crop stage's modules, so the same inputs give the same stamp on any
machine (the output folder's DVC hash stays put); it also keeps the clip's manifest row and warnings so a
skipped clip is reported exactly as when it was cropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from selfme.cache import code_digest, item_key, read_record, write_record
from selfme.io import file_sha256

STAMP_NAME = "crop.json"
#: The module whose import closure computes a crop (its code digest keys every stamp).
CROP_MODULE = "selfme.face.crop"


def file_signature(path: Path) -> list[Any]:
    """[name, SHA-256 of the content] of a file: changes with the content, not with the clock."""
    return [path.name, file_sha256(path)]


def clip_key(*, fingerprint: dict[str, Any], annotation: dict[str, Any], sources: Iterable[Path],
             ground_truth: Path | None) -> str:
    """The key of everything that determines a clip's crops (``selfme.cache.item_key``)."""
    inputs = {"sources": [file_signature(p) for p in sources],
              "ground_truth": file_signature(ground_truth) if ground_truth is not None else None}
    return item_key(params={"fingerprint": fingerprint, "annotation": annotation}, inputs=inputs,
                    code=code_digest(CROP_MODULE))


def read_stamp(clip_dir: Path, key: str) -> dict[str, Any] | None:
    """The stamp of a cropped clip folder if it holds ``key``; None (absent, unreadable or stale: the
    clip is redone)."""
    return read_record(clip_dir / STAMP_NAME, key)


def write_stamp(clip_dir: Path, *, key: str, row: dict[str, Any], warnings: list[dict[str, str]],
                frames: list[str]) -> None:
    """Write the stamp (call it last, inside the clip's temporary folder)."""
    write_record(clip_dir / STAMP_NAME, {"row": row, "warnings": warnings, "frames": frames}, key=key)
