"""LOSO wall time on a CASME II-sized synthetic set: the plain path against the fast settings (a script,
not a test).

    python bench/bench_loso.py                          # CUDA: the paper's SCViT; else the small form
    python bench/bench_loso.py --profile paper --workers 6 --plain-budget 120
    python bench/bench_loso.py --profile small --json loso.json

The set has CASME II's 3-class size: 145 samples of 24 subjects (88 / 32 / 25 per class), synthetic
class-dependent motion fields at the model's input size, written as a motion index in a scratch folder
and read through ``selfme.scvit.load_samples`` as the loso stage reads real ones. Profiles:

* ``paper``: ViT-S/16 at 224 (random initialisation: the weights do not change the cost), batch 32,
  60 epochs, omega 0.11, tau 0.07, Adam 1e-4, ExponentialLR 0.9;
* ``small``: the same schedule shape on a scaled-down SCViT (64 px, 8 px patches, 2 blocks of width 96)
  for 8 epochs, so that a CPU measures it in a minute.

``plain`` trains the folds one at a time in this process, float32, eager (run_loso's one-process path:
``run_fold`` per fold); when ``--plain-budget`` seconds run out before the last fold, its wall time is
extrapolated from the folds it trained (mean seconds per fold x 24, plus building the inputs) and the
JSON says how many folds it measured. ``fast`` is one whole ``run_loso`` call with the fastest settings
for the device: CUDA: ``--workers`` fold processes on the GPU (several folds at once), inputs resident,
no per-step synchronisation, bf16 autocast, channels-last; CPU: ``--workers`` fold processes of one
thread each (one per core), no per-step synchronisation. Predictions of the folds both trained are
compared (same class, largest probability difference).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from selfme.io import write_json
from selfme.scvit import LosoConfig, SCViTConfig, load_samples, run_loso
from selfme.scvit.folds import seed_dir
from selfme.scvit.inputs import HORIZONTAL
from selfme.scvit.loso import plan_runs, run_fold
from selfme.scvit.sources import build_inputs
from selfme.device import resolve_device

CLASS_SIZES = (88, 32, 25)   # CASME II, MEGC2019 3-class list: negative, positive, surprise
N_SUBJECTS = 24
SCHEDULE = dict(batch_size=32, lr=1e-4, gamma_lr=0.9, seeds=[0])
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {"scvit": dict(model_name="vit_small_patch16_224", img_size=224, pretrained=False, omega=0.11, tau=0.07),
              "loso": dict(SCHEDULE, epochs=60)},
    "small": {"scvit": dict(model_name="vit_small_patch16_224", img_size=64, patch_size=8, depth=2, embed_dim=96,
                            num_heads=3, head_hidden=96, pretrained=False, omega=0.11, tau=0.07),
              "loso": dict(SCHEDULE, epochs=8)},
}


def casme2_sized_index(root: Path, size: int, *, seed: int = 0) -> Path:
    """145 synthetic motion fields [size, size, 2] (a class-dependent band of vertical motion plus noise),
    24 subjects of uneven size (each at least 2 samples), as a motion index CSV."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), CLASS_SIZES)
    rng.shuffle(labels)
    subjects = np.concatenate([np.arange(N_SUBJECTS).repeat(2),
                               rng.choice(N_SUBJECTS, len(labels) - 2 * N_SUBJECTS, p=rng.dirichlet([2] * N_SUBJECTS))])
    rows = []
    band = max(1, size // 3)
    for i, (label, subject) in enumerate(zip(labels, np.sort(subjects))):
        field = rng.normal(scale=0.2, size=(size, size, 2)).astype(np.float32)
        field[label * band:(label + 1) * band, :, 1] += 1.0
        path = root / "motion" / f"sub{subject + 1:02d}" / f"EP{i:03d}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, field.astype(np.float16))
        rows.append({"dataset": "casme2", "subject": f"sub{subject + 1:02d}", "clip": f"EP{i:03d}",
                     "label": ["negative", "positive", "surprise"][label], "label_id": int(label),
                     "motion_path": str(path)})
    index = root / "index.csv"
    pd.DataFrame(rows).to_csv(index, index=False)
    return index


def time_plain(samples, out: Path, model_config: SCViTConfig, config: LosoConfig, budget: float) -> dict[str, Any]:
    """Folds one at a time in this process until ``budget`` seconds are spent; the 24-fold wall time."""
    tic = time.perf_counter()
    device = resolve_device(config.device, key="loso.device")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    runs = [r for r, _ in plan_runs(samples, out=out, model_config=model_config, config=config, num_classes=3,
                                    datasets=samples.datasets)]
    x, channels = build_inputs(samples, model_config.input_config())
    frame = samples.frame
    data = {"x": x, "y": torch.as_tensor(np.array(frame["label_id"], dtype=np.int64)),
            "clips": frame["clip"].astype(str).tolist(),
            "ids": (frame["dataset"].astype(str) + "/" + frame["subject"].astype(str)).tolist()}
    inputs_s = time.perf_counter() - tic
    negate = tuple(i for i, c in enumerate(channels) if c in HORIZONTAL)
    seconds = []
    for run in runs:
        start = time.perf_counter()
        run_fold(data, run, out=out, model_config=model_config, config=config, num_classes=3, device=device,
                 negate=negate)
        seconds.append(time.perf_counter() - start)
        if time.perf_counter() - tic > budget:
            break
    measured = len(seconds)
    wall = inputs_s + float(np.mean(seconds)) * len(runs)
    return {"wall_s": round(wall if measured < len(runs) else time.perf_counter() - tic, 2),
            "folds_measured": measured, "folds": len(runs), "extrapolated": measured < len(runs),
            "seconds_per_fold": round(float(np.mean(seconds)), 3), "inputs_s": round(inputs_s, 2),
            "settings": {"workers": 1, "amp": "none", "sync": "step", "compile": False}}


def time_fast(samples, out: Path, model_config: SCViTConfig, config: LosoConfig) -> dict[str, Any]:
    result = run_loso(samples, out=out, model_config=model_config, config=config, num_classes=3, progress=False)
    fast = {k: getattr(config, k) for k in ("workers", "stack_folds", "resident", "sync", "amp", "channels_last",
                                             "compile")}
    return {"wall_s": round(result.seconds, 2), "folds": len(result.ran), "settings": fast,
            "uf1": round(float(result.summary["casme2"]["uf1"]), 4)}


def agreement(plain_out: Path, fast_out: Path) -> dict[str, Any]:
    """Same predicted class and largest probability difference on the folds both runs trained."""
    same, total, diff = 0, 0, 0.0
    for path in sorted(seed_dir(plain_out, "casme2", 0).glob("*.csv")):
        other = seed_dir(fast_out, "casme2", 0) / path.name
        if not other.is_file():
            continue
        a, b = pd.read_csv(path), pd.read_csv(other)
        same += int((a["pred_id"] == b["pred_id"]).sum())
        total += len(a)
        probs = [c for c in a.columns if c.startswith("p_")]
        diff = max(diff, float(np.abs(a[probs].to_numpy() - b[probs].to_numpy()).max()))
    return {"samples_compared": total, "same_class": round(same / total, 4) if total else None,
            "max_abs_prob_diff": round(diff, 6)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None, help="default: paper on CUDA, else small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=6, help="fold processes of the fast run (CUDA: on one GPU)")
    parser.add_argument("--plain-budget", type=float, default=120.0, help="seconds of plain training, then extrapolate")
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    device = resolve_device(args.device, key="--device")
    profile = args.profile or ("paper" if device.type == "cuda" else "small")
    spec = PROFILES[profile]
    loso = {**spec["loso"], "device": str(device), **({"epochs": args.epochs} if args.epochs else {})}
    model_config = SCViTConfig(**spec["scvit"])
    scratch = Path(tempfile.mkdtemp(prefix="selfme_bench_loso_"))
    try:
        samples = load_samples(casme2_sized_index(scratch, model_config.img_size))
        result: dict[str, Any] = {"profile": profile, "device": str(device), "samples": len(samples.frame),
                                  "subjects": N_SUBJECTS, "scvit": spec["scvit"], "schedule": loso,
                                  "plain": time_plain(samples, scratch / "plain", model_config,
                                                      LosoConfig(**loso, workers=1), args.plain_budget)}
        if device.type == "cuda":
            torch.cuda.empty_cache()
            fast = dict(workers=args.workers, resident=True, sync="epoch", amp="bf16", channels_last=True)
        else:  # bf16 is emulated on most CPUs, and stacked folds measured slower for this ViT (README)
            fast = dict(workers=args.workers, threads=1 if args.workers > 1 else 0, resident=True, sync="epoch")
        result["fast"] = time_fast(samples, scratch / "fast", model_config, LosoConfig(**loso, **fast))
        result["fast"]["agreement_with_plain"] = agreement(scratch / "plain", scratch / "fast")
        result["speedup"] = result["fast"]["speedup"] = round(result["plain"]["wall_s"] / result["fast"]["wall_s"], 2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
