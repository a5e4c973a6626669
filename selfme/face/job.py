"""What the cropper is asked to do for one clip (``ClipJob``) and which frames that involves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True, kw_only=True)
class ClipJob:
    """One manifest row to crop: where its frames are, where the crops (and ground truth) go."""

    row: dict[str, Any]
    frames_dir: Path
    out_dir: Path
    gt_in: Path | None = None
    gt_out: Path | None = None

    @property
    def subject(self) -> str:
        return str(self.row["subject"])

    @property
    def clip(self) -> str:
        return str(self.row["clip"])

    def key_frames(self) -> tuple[int, int, int]:
        return int(self.row["onset"]), int(self.row["apex"]), int(self.row["offset"])


def plain(value: Any) -> Any:
    """A JSON-friendly Python value for a numpy/pandas scalar."""
    return value.item() if isinstance(value, np.generic) else value


def select_frames(frames: dict[int, Path], onset: int, offset: int, mode: str) -> dict[int, Path]:
    """The frames to crop: onset..offset (``clip``) or all of the folder (``all``)."""
    if mode == "all":
        return dict(frames)
    return {n: p for n, p in frames.items() if onset <= n <= offset}


def drift_frame_numbers(numbers: list[int], onset: int, apex: int, offset: int, count: int) -> list[int]:
    """Up to ``count`` frames besides the onset for the drift check: apex, offset, then evenly spaced."""
    if count <= 0:
        return []
    spaced = [numbers[int(round(i))] for i in np.linspace(0, len(numbers) - 1, num=count + 2)]
    chosen: list[int] = []
    for n in [apex, offset, *spaced]:
        if n != onset and n in numbers and n not in chosen:
            chosen.append(n)
    return chosen[:count]


def output_name(path: Path, image_format: str) -> str:
    """The crop's file name: the source name, or the same stem with the requested type."""
    if image_format == "keep":
        return path.name
    return f"{path.stem}.{image_format}"
