"""Training throughput of the motion learner in the paper configuration (a script, not a test).

    python bench/bench_motion.py                       # vox-256 architecture, 256x256, batch 4, 3 steps
    python bench/bench_motion.py --batch-size 40 --steps 20 --warmup 3     # on a GPU (FOMM's vox batch)
    python bench/bench_motion.py --params params.yaml  # the architecture of params.yaml's motion section

Prints training images per second (forward + backward + Adam step, perceptual + equivariance losses) and
peak memory, overall and of each timed step (CUDA: max allocated, reset before every step; CPU: the
process's peak resident set so far, which only grows), on CUDA with bf16 autocast
when present, else on the CPU (few steps: a 256x256 step takes seconds there). The VGG is randomly
initialised (its weights do not change the cost), so no download or cached file is needed.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch
import yaml

from selfme.device import resolve_device
from selfme.motion.model import PAPER_ARCHITECTURE, MotionLearner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=None, help="take the architecture from this params.yaml's motion")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--scales", type=float, nargs="+", default=None,
                        help="pyramid scales (default: --params' pretrain.loss.scales, else 1 0.5 0.25 0.125)")
    parser.add_argument("--device", default=None, help="cuda | cpu (default: cuda when present)")
    parser.add_argument("--json", default=None, help="also write the result to this JSON file")
    args = parser.parse_args(argv)

    config, scales = dict(PAPER_ARCHITECTURE), [1, 0.5, 0.25, 0.125]
    if args.params:
        with open(args.params, encoding="utf-8") as fh:
            params = yaml.safe_load(fh)
        config = params["motion"]
        scales = params.get("pretrain", {}).get("loss", {}).get("scales", scales)
    scales = args.scales or scales
    device = resolve_device(args.device or "auto", key="--device")
    torch.manual_seed(0)
    model = MotionLearner(config=config, losses={"scales": scales}, vgg={"pretrained": False}).to(device)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=2e-4, betas=(0.5, 0.999))
    size = int(model.config["image_size"])
    source = torch.rand(args.batch_size, 3, size, size, device=device)
    target = torch.roll(source, shifts=(2, 3), dims=(2, 3))
    rng = torch.Generator().manual_seed(0)

    def step() -> float:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(source, target, rng=rng)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        return out["loss"].item()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    per_step = []
    tic = time.perf_counter()
    for _ in range(args.steps):
        start = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        step()  # its loss.item() waits for the GPU
        per_step.append({"seconds": round(time.perf_counter() - start, 4), "peak_gib": round(_peak_gib(device), 3)})
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    peak = max(s["peak_gib"] for s in per_step)
    if device.type == "cuda":
        peak_kind, name = "cuda_max_allocated_gib", torch.cuda.get_device_name(device)
    else:
        peak_kind, name = "cpu_peak_rss_gib", f"cpu ({torch.get_num_threads()} threads)"
    result = {"device": name, "image_size": size, "num_kp": model.config["num_kp"], "batch_size": args.batch_size,
              "steps": args.steps, "seconds_per_step": seconds / args.steps,
              "images_per_second": args.batch_size * args.steps / seconds, peak_kind: round(peak, 3),
              "trainable_parameters_m": round(sum(p.numel() for p in model.trainable_parameters()) / 1e6, 2),
              "bf16_autocast": device.type == "cuda", "per_step": per_step}
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


if __name__ == "__main__":
    sys.exit(main())
