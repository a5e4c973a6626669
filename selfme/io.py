"""Atomic file and folder writes, image reading with clear errors.

Every artifact a stage produces goes through these helpers, so an interrupted stage never leaves a
half-written file or folder that a rerun (or DVC) would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; move it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; it replaces ``path`` (whole) only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV atomically (no index column)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` atomically, through a file handle: torch names the zip's records after the file it
    is given (here a random temporary name), a handle gets the fixed ``archive/``, so the same object
    always gives the same bytes (and the same DVC hash on every clone)."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def read_image(path: str | os.PathLike, *, gray: bool = False) -> np.ndarray:
    """Read an image as uint8 RGB [H, W, 3] (or [H, W] with ``gray``); raise a clear error otherwise."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frame not found: {path}")
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_UNCHANGED
    image = cv2.imread(str(path), flag)
    if image is None or image.size == 0:
        raise ValueError(f"unreadable or corrupt image: {path}")
    if gray:
        return image
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        image = image[:, :, :3]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike, image: np.ndarray, *, jpeg_quality: int = 95) -> None:
    """Write an RGB (or gray) uint8 image atomically; the format follows the suffix."""
    import cv2

    path = Path(path)
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    ok, buf = cv2.imencode(path.suffix, bgr, params)
    if not ok:
        raise ValueError(f"could not encode image as {path.suffix}: {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
