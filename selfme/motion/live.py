"""dvclive for the motion learner's training: the curves and sample images of rank 0, resumable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

def trim_live_dir(live_dir: Path, start_step: int) -> None:
    """Drop dvclive rows at or after ``start_step`` (a resumed run rewrites them)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text(encoding="utf-8").splitlines()
        if not lines:
            continue
        header, rows = lines[0], lines[1:]
        step_col = header.split("\\t").index("step") if "step" in header.split("\\t") else None
        if step_col is None:
            continue
        kept = [r for r in rows if int(r.split("\\t")[step_col]) < start_step]
        tsv.write_text("\\n".join([header, *kept]) + "\\n", encoding="utf-8")


def open_live(live_dir: str | os.PathLike | None, *, rank: int, start_epoch: int, params: Mapping[str, Any]):
    """dvclive on rank 0 (rows from a resumed epoch on dropped first), or None."""
    if rank != 0 or live_dir is None:
        return None
    from dvclive import Live

    live_dir = Path(live_dir)
    if start_epoch > 0 and live_dir.is_dir():
        trim_live_dir(live_dir, start_epoch)
    live = Live(str(live_dir), resume=start_epoch > 0, dvcyaml=False, save_dvc_exp=False)
    live.step = start_epoch
    live.log_params(dict(params))
    return live


def log_epoch(live, record: Mapping[str, float], *, epochs: int, image_every: int,
              sample: Callable[[], np.ndarray]) -> None:
    """The epoch's row in dvclive, when it is open (plus ``sample()``'s PNG every ``image_every`` epochs
    and at the last), then the next step."""
    if live is None:
        return
    epoch = int(record["epoch"])
    for key, value in record.items():
        if key != "epoch":
            live.log_metric(key.replace("val_", "val/") if key.startswith("val_") else f"train/{key}", value)
    if image_every and (epoch % image_every == 0 or epoch == epochs):
        live.log_image(f"sample_epoch{epoch:04d}.png", sample())
    live.next_step()
