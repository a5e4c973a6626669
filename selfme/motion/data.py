"""Frame-pair datasets for the motion learner: ME clips, VoxCeleb videos, and SynthME with head motion.

Every sample is (source, target), two frames of the same video as float tensors [3, S, S] in [0, 1]
(grey frames replicated to 3 channels, non-square frames centre-cropped, then resized to S). A sample is
a pure function of (seed, epoch, index): the DataLoader's workers, their number and a resumed run all see
the same pairs. An "epoch" is ``pairs_per_epoch`` samples; videos are visited in a per-epoch permutation.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from selfme.datasets import read_manifest
from selfme.datasets.frames import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, frame_number, index_frames, key_frame_files,
                                    resolve_manifest_path, video_frames, video_properties)
from selfme.io import read_image
from selfme.motion.preprocess import to_tensor


class FrameFolder:
    """A video stored as numbered image files; an ME clip also knows the positions of its onset and apex."""

    def __init__(self, paths: Sequence[Path], name: str, *, onset_index: int | None = None,
                 apex_index: int | None = None) -> None:
        if not paths:
            raise ValueError(f"video {name} has no frames")
        self.paths, self.name = list(paths), name
        for label, value in (("onset", onset_index), ("apex", apex_index)):
            if value is not None and not 0 <= value < len(self.paths):
                raise ValueError(f"video {name}: {label} index {value} outside its {len(self.paths)} frames")
        self.onset_index, self.apex_index = onset_index, apex_index

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        return [read_image(self.paths[i]) for i in indices]


class VideoFile:
    """A video file read with OpenCV (frames decoded sequentially, so the frame a seed picks is exact)."""

    def __init__(self, path: Path) -> None:
        self.path, self.name = path, path.stem
        self._length: int | None = None

    def __len__(self) -> int:
        if self._length is None:
            self._length = video_properties(self.path)[0]
        return self._length

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        wanted, frames, last = set(indices), {}, None
        # a container that over-reports its length ends early: the last decoded frame stands in
        for i, frame in enumerate(video_frames(self.path, count=max(indices) + 1)):
            last = frame
            if i in wanted:
                frames[i] = frame
        if last is None:
            raise ValueError(f"no frame decodable in {self.path}")
        return [cv2.cvtColor(frames.get(i, last), cv2.COLOR_BGR2RGB) for i in indices]


def me_clip_videos(manifest: str | os.PathLike | pd.DataFrame, *, manifest_path: str | os.PathLike | None = None,
                   clip_range: bool = True) -> list[FrameFolder]:
    """One video per manifest row (cropped faces): frames onset..offset (all frames if ``clip_range`` is
    False or the range is empty). Relative frames_dir resolve against the working directory, then the
    manifest's folder."""
    if not isinstance(manifest, pd.DataFrame):
        manifest_path = Path(manifest)
        manifest = read_manifest(manifest_path)
    videos = []
    for row in manifest.itertuples(index=False):
        frames = index_frames(resolve_manifest_path(row.frames_dir, manifest_path))
        numbers = [n for n in frames if not clip_range or int(row.onset) <= n <= int(row.offset)] or list(frames)
        onset, apex = int(row.onset), int(row.apex)
        videos.append(FrameFolder([frames[n] for n in numbers], f"{row.subject}/{row.clip}",
                                  onset_index=numbers.index(onset) if onset in numbers else None,
                                  apex_index=numbers.index(apex) if apex in numbers else None))
    if not videos:
        raise ValueError(f"manifest {manifest_path} has no clips")
    return videos


def voxceleb_videos(root: str | os.PathLike, *, split: str | None = "train") -> list[FrameFolder | VideoFile]:
    """VoxCeleb in its usual preprocessed forms: ``root[/split]/<video>/`` folders of frames (e.g. 256x256
    PNGs) or ``root[/split]/<video>.mp4`` files. Sorted by name."""
    root = Path(root)
    if split and (root / split).is_dir():
        root = root / split
    if not root.is_dir():
        raise FileNotFoundError(f"VoxCeleb folder not found: {root} (one folder of frames or one mp4 per video)")
    videos: list[FrameFolder | VideoFile] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = [p for p in entry.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
            files.sort(key=lambda p: (frame_number(p) if frame_number(p) is not None else -1, p.name))
            if files:
                videos.append(FrameFolder(files, entry.name))
        elif entry.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(VideoFile(entry))
    if not videos:
        raise ValueError(f"no videos (frame folders or {sorted(VIDEO_SUFFIXES)}) in {root}")
    return videos


def random_head_motion(image: np.ndarray, rng: np.random.Generator, *, translate_px: float, rotate_deg: float,
                       scale: float) -> np.ndarray:
    """Warp by a random similarity about the centre: uniform translation (+-translate_px), rotation
    (+-rotate_deg) and scale (1 +- scale), reflecting at the borders (synthetic rigid head motion)."""
    h, w = image.shape[:2]
    angle = rng.uniform(-rotate_deg, rotate_deg)
    zoom = 1.0 + rng.uniform(-scale, scale)
    tx, ty = rng.uniform(-translate_px, translate_px, size=2)
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, zoom)
    matrix[:, 2] += (tx, ty)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


class FramePairDataset(Dataset):
    """Random (source, target) pairs of frames from the same video, ``pairs_per_epoch`` per epoch.

    ``head_motion`` ({translate_px, rotate_deg, scale}, pixels of the *output* size) warps the target by
    a random similarity (the demo's stand-in for VoxCeleb head motion); ``hflip`` mirrors both frames
    with probability 0.5.

    Pair sampling (Sec. 3.2: "two random frames of a clip") is uniform by default. ``onset_apex`` (a
    departure, 0 = the paper's) is the probability that a pair of an ME clip with a known onset and apex
    is instead (onset frame, a frame at most ``apex_window`` frames from the apex), the contrast the
    extraction stage asks the learner for; uniform pairs of a 24-frame clip mostly show two frames
    of nearly the same expression phase.
    """

    def __init__(self, videos: Sequence[FrameFolder | VideoFile], *, image_size: int, pairs_per_epoch: int,
                 seed: int = 0, hflip: bool = False, head_motion: Mapping[str, float] | None = None,
                 onset_apex: float = 0.0, apex_window: int = 2) -> None:
        if not 0.0 <= onset_apex <= 1.0 or apex_window < 0:
            raise ValueError(f"onset_apex must be in [0, 1] and apex_window >= 0, got {onset_apex}, {apex_window}")
        self.onset_apex, self.apex_window = float(onset_apex), int(apex_window)
        if not videos:
            raise ValueError("no videos")
        self.videos, self.image_size, self.pairs_per_epoch = list(videos), int(image_size), int(pairs_per_epoch)
        self.seed, self.hflip = int(seed), bool(hflip)
        self.head_motion = dict(head_motion) if head_motion else None
        if self.head_motion and not any(self.head_motion.values()):
            self.head_motion = None
        self.epoch = 0
        self._order: np.ndarray | None = None
        self._order_epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def _video_order(self) -> np.ndarray:
        n = len(self.videos)
        rounds = math.ceil(self.pairs_per_epoch / n)
        rng = np.random.default_rng([self.seed, self.epoch, 0x5E1F])
        return np.concatenate([rng.permutation(n) for _ in range(rounds)])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.pairs_per_epoch:
            raise IndexError(index)
        if self._order is None or self._order_epoch != self.epoch:
            self._order, self._order_epoch = self._video_order(), self.epoch
        video = self.videos[int(self._order[index])]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        pair = self.sample_pair(video, rng)
        source, target = video.read([int(pair[0]), int(pair[1])])
        source, target = to_tensor(source, self.image_size), to_tensor(target, self.image_size)
        if self.head_motion:
            warped = random_head_motion((target.permute(1, 2, 0).numpy() * 255.0).astype(np.float32), rng,
                                        **self.head_motion)
            target = torch.from_numpy(warped / 255.0).permute(2, 0, 1).float().clamp_(0, 1)
        if self.hflip and rng.random() < 0.5:
            source, target = source.flip(-1), target.flip(-1)
        return source, target

    def sample_pair(self, video: FrameFolder | VideoFile, rng: np.random.Generator) -> tuple[int, int]:
        """(source, target) frame positions: uniform without replacement, or onset -> near apex (see above)."""
        n = len(video)
        onset, apex = getattr(video, "onset_index", None), getattr(video, "apex_index", None)
        if self.onset_apex and onset is not None and apex is not None and rng.random() < self.onset_apex:
            low, high = max(0, apex - self.apex_window), min(n - 1, apex + self.apex_window)
            return onset, int(rng.integers(low, high + 1))
        if n < 2:
            return 0, 0
        pair = rng.choice(n, size=2, replace=False)
        return int(pair[0]), int(pair[1])


class OnsetApexPairs(Dataset):
    """(onset, apex) frames of manifest clips: the pairs the extraction stage feeds the learner."""

    def __init__(self, manifest: pd.DataFrame, *, image_size: int,
                 manifest_path: str | os.PathLike | None = None) -> None:
        self.items = []
        for row in manifest.itertuples(index=False):
            _, onset, apex = key_frame_files(row.frames_dir, row.onset, row.apex, name=f"{row.subject}/{row.clip}",
                                             manifest_path=manifest_path)
            self.items.append((onset, apex))
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        onset, apex = self.items[index]
        return to_tensor(read_image(onset), self.image_size), to_tensor(read_image(apex), self.image_size)
