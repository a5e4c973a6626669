"""One device check (run through bench/device_check.sh): extraction, LOSO and motion-learner figures of
this machine, side by side, in metrics/bench_device.json and a printed table.

With CUDA it measures the paper configuration (about 6 minutes, 8 at most); without, a small form of the
same measurements (about 3 minutes on 2 cores, 5 at most). Each part runs in its own process under a
time limit, so a part that fails or runs out of time is reported as such and the others still count:

* extract: motion pairs per second at 256 x 256 (bench/bench_extract.py, random paper-architecture
  learner): the learned motion (learner + B-spline + scaling and squaring) and the torch TV-L1 on the
  device, and the torch TV-L1 on the CPU (all its cores); the learned motion both in float32 and under
  ``extract.amp: bf16`` (its networks in bf16 autocast); without CUDA also their ratios by the process's
  CPU time per pair (on cores shared with other jobs the wall-clock ratio moves with their load);
* loso: 24-fold LOSO wall time on a CASME II-sized synthetic set (bench/bench_loso.py), plain against
  the fastest settings;
* motion: training images per second of the motion learner at 256 (bench/bench_motion.py, paper
  architecture, bf16 on CUDA) and the peak memory of each step.

Host facts and timings go into metrics/bench_device.json only (never into a DVC metrics file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from selfme.io import write_json

BENCH = Path(__file__).resolve().parent
#: The plain LOSO path's settings (the fast run prints the ones it changes).
PLAIN = {"stack_folds": 1, "resident": False, "sync": "step", "amp": "none", "channels_last": False, "compile": False}


def plan(cuda: bool, workers: int) -> dict[str, dict[str, Any]]:
    """Each part: the commands (script, arguments, JSON file) and the time limit in seconds."""
    if cuda:
        extract = [("bench_extract.py", ["--device", "cuda", "--methods", "selfme", "tvl1", "--amp", "none", "bf16", "--pairs", "256",
                                         "--batch-size", "64", "--warmup", "1", "--rounds", "2"], "extract_device.json"),
                   ("bench_extract.py", ["--device", "cpu", "--methods", "tvl1", "--pairs", "8", "--batch-size", "8",
                                         "--warmup", "1", "--rounds", "2"], "extract_cpu.json")]
        loso = ["--profile", "paper", "--workers", str(workers), "--plain-budget", "100"]
        motion = ["--batch-size", "40", "--steps", "10", "--warmup", "3"]
        limits = {"extract": 100, "loso": 270, "motion": 90}
    else:
        extract = [("bench_extract.py", ["--device", "cpu", "--methods", "selfme", "tvl1", "--amp", "none", "bf16", "--pairs", "8",
                                         "--batch-size", "8", "--warmup", "1", "--rounds", "3"], "extract_cpu.json")]
        loso = ["--profile", "small", "--epochs", "3", "--workers", str(workers), "--plain-budget", "50"]
        motion = ["--device", "cpu", "--batch-size", "1", "--steps", "2", "--warmup", "1"]
        limits = {"extract": 80, "loso": 130, "motion": 75}
    common = ["--manifest", "none", "--size", "256", "--model", "none", "--params", "none"]
    return {"extract": {"commands": [(s, a + common, j) for s, a, j in extract], "limit": limits["extract"]},
            "loso": {"commands": [("bench_loso.py", loso, "loso.json")], "limit": limits["loso"]},
            "motion": {"commands": [("bench_motion.py", motion, "motion.json")], "limit": limits["motion"]}}


def run_part(name: str, part: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Run a part's commands in turn within its time limit; returns their JSON results (or the failure)."""
    deadline = time.monotonic() + part["limit"]
    results: dict[str, Any] = {}
    tic = time.perf_counter()
    for script, args, json_name in part["commands"]:
        left = deadline - time.monotonic()
        out = scratch / json_name
        cmd = [sys.executable, str(BENCH / script), *args, "--json", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(1.0, left))
        except subprocess.TimeoutExpired:
            return {**results, "error": f"timed out after {part['limit']} s", "seconds": round(time.perf_counter() - tic, 1)}
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {**results, "error": f"{script} exited {proc.returncode}: {' | '.join(tail)}",
                    "seconds": round(time.perf_counter() - tic, 1)}
        results[json_name.removesuffix(".json")] = json.loads(out.read_text(encoding="utf-8"))
    results["seconds"] = round(time.perf_counter() - tic, 1)
    return results


def extraction_figures(part: dict[str, Any]) -> dict[str, Any]:
    """Pairs per second of each method and device, and the ratios the README explains."""
    rate, cpu_ms = {}, {}
    for where in ("device", "cpu"):
        methods = part.get(f"extract_{where}", {}).get("extract", {}).get("methods", {})
        for method, row in methods.items():
            rate[f"{method}_{where}"] = row["pairs_per_second"]
            cpu_ms[f"{method}_{where}"] = row.get("cpu_ms_per_pair")
    tvl1_device = rate.get("tvl1_device", rate.get("tvl1_cpu"))
    ratio = lambda a, b: round(a / b, 2) if a and b else None  # noqa: E731
    figures: dict[str, Any] = {"pairs_per_second": rate, "cpu_ms_per_pair": cpu_ms}
    for row, name in (("selfme", "learned"), ("selfme_bf16", "learned_bf16")):  # float32, extract.amp bf16
        learned = rate.get(f"{row}_device", rate.get(f"{row}_cpu"))
        figures[f"{name}_over_tvl1_same_device"] = ratio(learned, tvl1_device)
        figures[f"{name}_over_tvl1_cpu"] = ratio(learned, rate.get("tvl1_cpu"))
        # both on the CPU, by the process's CPU time (what other jobs on the cores do not change)
        figures[f"{name}_over_tvl1_cpu_time"] = ratio(cpu_ms.get("tvl1_cpu"), cpu_ms.get(f"{row}_cpu"))
    figures["tvl1_device_over_tvl1_cpu"] = ratio(rate.get("tvl1_device"), rate.get("tvl1_cpu"))
    return figures


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_facts() -> dict[str, Any]:
    facts = {"python": platform.python_version(), "torch": torch.__version__, "cpu": cpu_name(),
             "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu=props.name, gpu_count=torch.cuda.device_count(), gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                     cuda_version=torch.version.cuda)
    return facts


def table(report: dict[str, Any]) -> str:
    """The printed summary: one line per figure."""
    lines = [f"device check ({'CUDA: ' + report['host'].get('gpu', '') if report['host']['cuda'] else 'CPU only'}, "
             f"{report['host']['cpu_count']} cores, {report['host']['torch_threads']} torch threads), "
             f"{report['seconds']:.0f} s"]
    ext, loso, motion = report["extract"], report["loso"], report["motion"]
    if "error" in ext:
        lines.append(f"  extraction             {ext['error']}")
    else:
        f = ext["figures"]
        for key, value in f["pairs_per_second"].items():
            cpu = f.get("cpu_ms_per_pair", {}).get(key)
            lines.append(f"  extraction {key:<13} {value:9.2f} pairs/s (256 x 256)"
                         + (f", {cpu:.1f} CPU ms per pair" if cpu and key.endswith("_cpu") else ""))
        lines.append(f"  learned / TV-L1 (same device) {f['learned_over_tvl1_same_device']}x,"
                     f" learned / TV-L1 on CPU {f['learned_over_tvl1_cpu']}x"
                     + (f", TV-L1 device / CPU {f['tvl1_device_over_tvl1_cpu']}x" if f["tvl1_device_over_tvl1_cpu"] else ""))
        if f.get("learned_bf16_over_tvl1_same_device"):
            lines.append(f"  learned, extract.amp bf16 / TV-L1 (same device) {f['learned_bf16_over_tvl1_same_device']}x,"
                         f" / TV-L1 on CPU {f['learned_bf16_over_tvl1_cpu']}x")
        for name in ("learned", "learned_bf16"):
            if f.get(f"{name}_over_tvl1_cpu_time"):
                lines.append(f"  {name} / TV-L1 by CPU time {f[f'{name}_over_tvl1_cpu_time']}x")
    if "error" in loso:
        lines.append(f"  LOSO                   {loso['error']}")
    else:
        r = loso["loso"]
        plain = r["plain"]
        note = f" (extrapolated from {plain['folds_measured']} of {plain['folds']} folds)" if plain["extrapolated"] else ""
        lines.append(f"  LOSO {r['profile']} SCViT, {r['samples']} samples, {r['subjects']} folds, "
                     f"{r['schedule']['epochs']} epochs, batch {r['schedule']['batch_size']}")
        lines.append(f"    plain (1 fold at a time, fp32, eager) {plain['wall_s']:8.1f} s{note}")
        v, agree = r["fast"], r["fast"]["agreement_with_plain"]
        shown = {k: x for k, x in v["settings"].items() if PLAIN.get(k) != x}
        lines.append(f"    fastest {json.dumps(shown)}"
                     f" {v['wall_s']:8.1f} s: {v['speedup']}x; same class as plain on {agree['same_class']:.0%} of "
                     f"{agree['samples_compared']} samples, max |dp| {agree['max_abs_prob_diff']}")
    if "error" in motion:
        lines.append(f"  motion learner         {motion['error']}")
    else:
        m = motion["motion"]
        peak_key = next(k for k in m if k.endswith("_gib") and k != "per_step")
        lines.append(f"  motion learner training {m['images_per_second']:.2f} images/s at {m['image_size']}, batch "
                     f"{m['batch_size']}, bf16 {m['bf16_autocast']}; peak {m[peak_key]} GiB ({peak_key}); per step "
                     + ", ".join(f"{s['seconds']:.2f} s / {s['peak_gib']} GiB" for s in m["per_step"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="metrics/bench_device.json")
    parser.add_argument("--workers", type=int, default=None,
                        help="LOSO fold processes of the fast run (default: 6 on a GPU, the core count on a CPU)")
    parser.add_argument("--parts", nargs="+", default=["extract", "loso", "motion"], choices=["extract", "loso", "motion"])
    parser.add_argument("--limit-scale", type=float, default=1.0, help="multiply every part's time limit")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    workers = args.workers or (6 if cuda else max(1, os.cpu_count() or 1))
    tic = time.perf_counter()
    report: dict[str, Any] = {"mode": "cuda" if cuda else "cpu", "host": host_facts()}
    with tempfile.TemporaryDirectory(prefix="selfme_device_check_") as scratch:
        for name, part in plan(cuda, workers).items():
            part["limit"] = round(part["limit"] * args.limit_scale)
            if name not in args.parts:
                report[name] = {"error": "not run (--parts)"}
                continue
            print(f"device check: {name} (at most {part['limit']} s) ...", flush=True)
            report[name] = run_part(name, part, Path(scratch))
    if "error" not in report["extract"]:
        report["extract"]["figures"] = extraction_figures(report["extract"])
    report["seconds"] = round(time.perf_counter() - tic, 1)
    write_json(args.out, report)
    print(table(report))
    print(f"written: {args.out}")
    return 0 if not any("error" in report[p] for p in args.parts) else 1


if __name__ == "__main__":
    sys.exit(main())
