"""The tiny SCViT / LOSO configuration and toy sample sources shared by the LOSO tests."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd
from motion_testing import one_torch_thread  # noqa: F401  (the one thread fixture, re-exported)
from selfme.scvit import LosoConfig, SCViTConfig, run_loso

SCVIT = dict(model_name="vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, embed_dim=32, num_heads=2,
             pretrained=False, omega=0.1, tau=0.07)
LOSO = dict(epochs=2, batch_size=4, lr=1e-3, gamma_lr=0.9, seeds=[0], workers=1, device="cpu", threads=1)


def motion_index(root: Path, subjects: Sequence[str] = ("s1", "s2", "s3"), clips: int = 3, *,
                 dataset: str = "toy", seed: int = 0) -> Path:
    """Class-dependent displacement fields in a motion index CSV (manifest columns + motion_path)."""
    rng = np.random.default_rng(seed)
    rows = []
    for subject in subjects:
        for k in range(clips):
            label = k % 3
            field = rng.normal(scale=0.1, size=(16, 16, 2)).astype(np.float32)
            field[label * 5:label * 5 + 5, :, 1] += 1.0
            path = root / "motion" / subject / f"EP{k:02d}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, field.astype(np.float16))
            rows.append({"dataset": dataset, "subject": subject, "clip": f"EP{k:02d}", "label": "x",
                         "label_id": label, "motion_path": str(path)})
    index = root / "index.csv"
    pd.DataFrame(rows).to_csv(index, index=False)
    return index


def image_folder(root: Path, samples: Sequence[tuple[str, str, str, int]]) -> tuple[Path, Path]:
    """``<subject>_<clip>.png`` motion images and a headerless MEGC2019-style labels CSV (db, subject,
    clip, label) for (db, subject, clip, label) rows; returns (folder, labels CSV)."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for _, subject, clip, label in samples:
        image = rng.integers(0, 60, (28, 28, 3), dtype=np.uint8)
        image[label * 9:label * 9 + 9, :, 1] = 230  # class-dependent vertical flow band
        cv2.imwrite(str(images / f"{subject}_{clip}.png"), image)
    labels = root / "gt.csv"
    labels.write_text("".join(f"{db},{s},{c},{y}\n" for db, s, c, y in samples))
    return images, labels


def random_samples(root: Path):
    """4 subjects x 3 clips (label = clip index) of random 8 x 8 (dx, dy) fields as LOSO ``Samples``."""
    from selfme.scvit.sources import Samples

    rng = np.random.default_rng(0)
    rows = []
    for s in range(4):
        for c in range(3):
            path = root / f"s{s}_c{c}.npy"
            np.save(path, rng.normal(size=(8, 8, 2)).astype(np.float32))
            rows.append({"db": "casme2", "subject": f"s{s}", "clip": f"c{c}", "label_id": c, "path": str(path)})
    frame = pd.DataFrame(rows).assign(dataset="casme2")
    return Samples(frame[["db", "dataset", "subject", "clip", "label_id", "path"]], "motion")


def run(samples, out, scvit=None, loso=None, datasets=None):
    return run_loso(samples, out=out, model_config=SCViTConfig(**{**SCVIT, **(scvit or {})}),
                    config=LosoConfig(**{**LOSO, **(loso or {})}), num_classes=3, datasets=datasets,
                    progress=False)
