"""Motion extraction throughput: SelfME (batched learner + B-spline + scaling and squaring) against TV-L1,
Farneback and DIS on the same onset/apex pairs (a script, not a test).

    python bench/bench_extract.py                                  # SynthME crops, models/motion/finetune.pt
    python bench/bench_extract.py --pairs 64 --batch-size 32       # on a GPU
    python bench/bench_extract.py --model none --params params.yaml   # random learner of params.yaml's motion
    python bench/bench_extract.py --rounds 3       # methods timed in turn, 3 rounds, median (a busy machine)
    python bench/bench_extract.py --forms frozen eager plain   # the learner's forms side by side
    python bench/bench_extract.py --amp none bf16              # float32 against bf16 autocast (extract.amp)

Pairs are the onset/apex crops of data/faces/synthme/manifest.csv (repeated to --pairs), or, when that is
absent, scikit-image's astronaut with a sub-pixel shift at --size. The learner is --model when the file
exists; otherwise a randomly initialised one with the architecture of --params' ``motion`` section (or the
paper's vox-256 one): weights do not change the cost. ``selfme`` runs the learner in its fastest form
(``frozen``, selfme.extract.engine.LEARNER_FORMS); --forms adds rows ``selfme_eager`` / ``selfme_plain``
for the other forms, timed in the same rounds; --amp bf16 adds ``selfme_bf16``, the fastest form under
``extract.amp: bf16`` (its networks under bf16 autocast). Prints pairs per second (wall clock) and the process's CPU
milliseconds per pair per method, side by side, and merges the result into --json (default
metrics/bench.json, key ``extract``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml

from selfme.device import AMP_MODES, resolve_device
from selfme.extract import ExtractConfig, MotionEngine
from selfme.extract.engine import LEARNER_FORMS
from selfme.io import read_image, write_json


def load_pairs(manifest: Path, n: int, size: int) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    if manifest.is_file():
        from selfme.datasets import read_manifest
        from selfme.extract.dataset import clip_jobs

        jobs = clip_jobs(read_manifest(manifest), manifest, Path("."))
        onsets = [read_image(j["onset_file"]) for j in jobs]
        apexes = [read_image(j["apex_file"]) for j in jobs]
        source = f"{manifest} ({len(jobs)} clips)"
    else:
        import cv2
        from skimage import data

        base = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
        moved = cv2.warpAffine(base, np.float32([[1, 0, 0.4], [0, 1, -0.3]]), (size, size), flags=cv2.INTER_CUBIC)
        onsets, apexes, source = [base], [moved], f"astronaut {size}x{size}"
    reps = -(-n // len(onsets))
    return (onsets * reps)[:n], (apexes * reps)[:n], source


def build_learner(model: str, params: str | None):
    from selfme.motion.model import PAPER_ARCHITECTURE, MotionLearner, load_motion_model

    if model != "none" and Path(model).is_file():
        return load_motion_model(model), model
    config = dict(PAPER_ARCHITECTURE)
    if params and Path(params).is_file():
        section = (yaml.safe_load(Path(params).read_text(encoding="utf-8")) or {}).get("motion")
        if section:
            config = {k: v for k, v in section.items() if k != "method"}
    torch.manual_seed(0)
    return MotionLearner(config=config).eval(), f"random weights, image_size {config['image_size']}"


def time_method(engine: MotionEngine, onsets, apexes, batch_size: int, warmup: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds for all pairs (after ``warmup`` untimed batches), batches of
    ``batch_size``. On a CPU shared with other jobs the CPU seconds leave out the time the others held the
    cores (with one thread they are the wall time of an idle core); on CUDA they are the host's share only."""
    for _ in range(warmup):
        engine.compute(onsets[:batch_size], apexes[:batch_size])
    tic, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(onsets), batch_size):
        engine.compute(onsets[i:i + batch_size], apexes[i:i + batch_size])
    return time.perf_counter() - tic, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="data/faces/synthme/manifest.csv")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--size", type=int, default=128, help="crop side when the manifest is absent")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1,
                        help="time every method this many times, in turn, and keep the median (load changes hit all)")
    parser.add_argument("--model", default="models/motion/finetune.pt", help="'none' for a random learner")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--methods", nargs="+", default=["selfme", "tvl1", "farneback", "dis"])
    parser.add_argument("--forms", nargs="+", default=["frozen"], choices=LEARNER_FORMS,
                        help="forms of the learner for selfme (row selfme = frozen, others selfme_<form>)")
    parser.add_argument("--amp", nargs="+", default=["none"], choices=AMP_MODES,
                        help="extract.amp values for selfme's fastest form (row selfme = none, selfme_bf16 = bf16)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default="metrics/bench.json", help="merged under the key 'extract'; '' = none")
    args = parser.parse_args(argv)

    onsets, apexes, source = load_pairs(Path(args.manifest), args.pairs, args.size)
    rows = {}
    learner, learner_desc = (build_learner(args.model, args.params) if "selfme" in args.methods else (None, None))
    engines = {}
    for method in args.methods:
        config = ExtractConfig.from_mapping({"batch_size": args.batch_size, "device": args.device}, method=method)
        if method != "selfme":
            engines[method] = MotionEngine(config)
        for form in args.forms if method == "selfme" else ():
            engines["selfme" if form == "frozen" else f"selfme_{form}"] = MotionEngine(config, learner=learner, form=form)
        for amp in [a for a in args.amp if a != "none"] if method == "selfme" else ():
            engines[f"selfme_{amp}"] = MotionEngine(replace(config, amp=amp), learner=learner)
    times: dict[str, list[tuple[float, float]]] = {method: [] for method in engines}
    for r in range(max(1, args.rounds)):
        for method, engine in engines.items():
            times[method].append(time_method(engine, onsets, apexes, args.batch_size, args.warmup if r == 0 else 0))
    for method, runs in times.items():
        seconds, cpu_seconds = (float(np.median([run[k] for run in runs])) for k in (0, 1))
        rows[method] = {"pairs_per_second": round(len(onsets) / seconds, 3),
                        "ms_per_pair": round(1000 * seconds / len(onsets), 2),
                        "cpu_ms_per_pair": round(1000 * cpu_seconds / len(onsets), 2), "rounds": len(runs)}
    device = resolve_device(args.device, key="--device")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    result = {"device": name, "pairs": len(onsets), "crop": list(onsets[0].shape[:2]), "source": source,
              "batch_size": args.batch_size, "learner": learner_desc, "methods": rows}
    print(f"{'method':>12} {'pairs/s':>10} {'ms/pair':>10} {'cpu ms/pair':>12}   ({len(onsets)} pairs "
          f"{onsets[0].shape[1]}x{onsets[0].shape[0]}, batch {args.batch_size}, {name})")
    for method, row in rows.items():
        print(f"{method:>12} {row['pairs_per_second']:>10.2f} {row['ms_per_pair']:>10.1f} {row['cpu_ms_per_pair']:>12.1f}")
    if args.json:
        path = Path(args.json)
        merged = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        merged["extract"] = result
        write_json(path, merged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
