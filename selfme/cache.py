"""One keyed cache for every item a stage may skip: crop clips, extracted motions, LOSO fold runs and
motion-learner checkpoints.

An item's key is the SHA-256 of the canonical JSON (sorted keys, no whitespace, no timestamps) of

* ``params``: the parameters that shape the item (plus the torch thread count where the result
  depends on it: float sums are ordered by the threads);
* ``inputs``: digests of the data it is computed from (file contents, not times);
* ``code``: the digest of the source files that compute it (:func:`code_digest`: the import closure of
  the computing module, ``selfme.imports``), so that editing the code of an item redoes that item and
  editing unrelated code does not.

An item's record (a JSON file) holds its key; :func:`read_record` returns it only when it parses, is an
object and holds the key asked for, so a record written for other parameters, inputs or code, a
half-written one or a corrupted one is never trusted: the item is computed again. Records are written
atomically (``selfme.io``). Every digest of the project is made here (file contents: ``io.file_sha256``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from selfme.imports import PROJECT_ROOT, import_closure, module_file
from selfme.io import file_sha256, write_text

#: Changes when the key's layout changes (so every older record is recomputed).
KEY_FORMAT = "selfme-key/1"


def sha256_hex(chunks: Iterable[bytes | str]) -> str:
    """SHA-256 (hex) of the concatenated chunks (text as UTF-8)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """JSON data for the few non-JSON types payloads and records carry; anything else is an error
    (an object's default text could hold a memory address, and the key would change every run)."""
    if isinstance(value, os.PathLike):
        return Path(value).as_posix()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cache: a {type(value).__name__} is not JSON data ({value!r:.60})")


def canonical_json(payload: Any) -> str:
    """The one text of ``payload``: sorted keys, no whitespace."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_plain, allow_nan=True)


def payload_key(payload: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``payload``."""
    return sha256_hex([canonical_json(payload)])


def code_files(modules: Sequence[str], *, root: Path = PROJECT_ROOT,
               packages: Sequence[str] = ("selfme",)) -> list[Path]:
    """The source files of ``modules`` and everything of ``packages`` they import (sorted)."""
    scripts = []
    for module in modules:
        path = module_file(module, root=root, packages=packages)
        if path is None:
            raise ValueError(f"cache: {module!r} is not a module of {list(packages)} under {root}")
        scripts.append(path)
    return sorted(import_closure(scripts, root=root, packages=packages))


def code_digest(*modules: str, root: Path = PROJECT_ROOT, packages: Sequence[str] = ("selfme",)) -> str:
    """SHA-256 over the relative path and the content digest of every file of :func:`code_files`: the
    same on every clone of the same sources, changed by any edit of a file the modules import."""
    root = Path(root)
    files = code_files(modules, root=root, packages=packages)
    return sha256_hex(f"{p.relative_to(root).as_posix()}\0{file_sha256(p)}\n" for p in files)


def key_payload(*, params: Mapping[str, Any], inputs: Any, code: str) -> dict[str, Any]:
    """What an item's key is the digest of (readable: checkpoints keep it beside the key)."""
    return {"format": KEY_FORMAT, "params": dict(params), "inputs": inputs, "code": code}


def item_key(*, params: Mapping[str, Any], inputs: Any, code: str) -> str:
    """The key of one item: params, input digests and the code digest (:func:`key_payload`)."""
    return payload_key(key_payload(params=params, inputs=inputs, code=code))


def record_text(record: Mapping[str, Any], *, key: str) -> str:
    """A record's file text: the record with its key (indented, in the record's own order)."""
    return json.dumps({**record, "key": key}, indent=2, default=_plain) + "\n"


def write_record(path: str | os.PathLike, record: Mapping[str, Any], *, key: str) -> dict[str, Any]:
    """Write ``record`` plus its ``key`` atomically as JSON; return what was written."""
    stored = {**record, "key": key}
    write_text(path, record_text(record, key=key))
    return stored


def read_record(path: str | os.PathLike, key: str) -> dict[str, Any] | None:
    """The record at ``path`` if it holds ``key``; None when it is absent, unreadable, not a JSON
    object or written for another key (the item is then computed again)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    return record
