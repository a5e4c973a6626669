"""Motion-learner study on SynthME: train one variant, score it on held-out clips (a script, not a test).

    PYTHONPATH=. python bench/motion_study.py --name baseline
    PYTHONPATH=. python bench/motion_study.py --table        # the log as a markdown table
    PYTHONPATH=. python bench/motion_study.py --name size128 --set motion.image_size=128
    PYTHONPATH=. python bench/motion_study.py --name jac --set motion.kp_detector.estimate_jacobian=true

(``PYTHONPATH=.``: a script's own folder, not the repository, comes first on sys.path.)

Takes params.yaml (or ``--params``), applies ``--set dotted.key=YAML`` overrides, holds out ``--holdout``
clips of the SynthME crops from BOTH pretraining and fine-tuning (``split_holdout`` with the stages'
seed), trains pretrain then finetune with the project's own stage function (``run_stage``) into a
scratch folder, and scores the fine-tuned learner on the held-out clips with the motion_eval code
(:func:`selfme.extract.evaluate_methods`) at gamma 1. TV-L1 / Farneback / DIS and zero motion on the same
clips are computed once per held-out set and cached in bench/out/motion_study (git-ignored). Appends one JSON line per run to
``--log``: EPE (all / face / expression, crop px), the held-out onset -> apex reconstruction L1 (the
generator's output, the source warped by the dense motion, and the identity), and the CPU seconds.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from selfme.cache import code_digest, item_key, read_record, write_record
from selfme.extract import evaluate_methods
from selfme.io import file_sha256, write_csv
from selfme.motion.holdout import held_out_clips, load_face_manifests, resolve_face_data
from selfme.motion.pipeline import run_stage

BASELINES = {"tvl1": {"method": "tvl1"}, "farneback": {"method": "farneback"}, "dis": {"method": "dis"}}
#: Where the baselines' figures are cached (git-ignored).
CACHE = Path(__file__).resolve().parent / "out" / "motion_study"
#: The module whose import closure computes the baselines (its code digest keys the cached figures).
BASELINES_MODULE = "selfme.extract.evaluate"


def apply_override(params: dict[str, Any], assignment: str) -> None:
    """``a.b.c=VALUE`` (VALUE parsed as YAML) sets params['a']['b']['c'] (creating missing levels)."""
    key, sep, value = assignment.partition("=")
    if not sep:
        raise ValueError(f"--set needs key=value, got {assignment!r}")
    node = params
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(value)


def held_out_manifest(params: dict[str, Any], folder: Path) -> Path:
    """The clips neither stage trains on (:func:`held_out_clips`) as a manifest CSV in ``folder``."""
    held = set(held_out_clips(params["pretrain"], params["finetune"], params.get("datasets")))
    manifest, _ = load_face_manifests(params["finetune"]["data"])
    rows = manifest[[f"{r.subject}/{r.clip}" in held for r in manifest.itertuples(index=False)]]
    path = folder / "heldout_manifest.csv"
    write_csv(path, rows.drop(columns="_manifest"))
    return path


def baselines_key(manifest: Path, extract: dict[str, Any]) -> str:
    """The cache key of the baselines (``selfme.cache``): the variants, extract params and torch threads,
    the held-out clip list's digest and the code digest of the motion_eval code that scores them."""
    return item_key(params={"variants": BASELINES, "extract": extract, "threads": torch.get_num_threads()},
                    inputs={"manifest": file_sha256(manifest)}, code=code_digest(BASELINES_MODULE))


def baselines(manifest: Path, extract: dict[str, Any], cache: Path) -> dict[str, Any]:
    """Classical flows and zero motion on the held-out clips, cached under :func:`baselines_key`."""
    key = baselines_key(manifest, extract)
    path = cache / f"motion_study_baselines_{key[:12]}.json"
    record = read_record(path, key)
    if record is not None:
        return {k: v for k, v in record.items() if k != "key"}
    result = evaluate_methods(manifest, BASELINES, extract=extract, progress=False)
    out = {"zero": result["zero_motion_epe"], "clips": result["clips"],
           **{name: v["epe"] for name, v in result["variants"].items()}}
    write_record(path, out, key=key)
    return out


def run(params: dict[str, Any], *, holdout: int, work: Path, plots: Path | None, cache: Path) -> dict[str, Any]:
    pretrain, finetune = params["pretrain"], params["finetune"]
    finetune["data"] = resolve_face_data(finetune["data"], params.get("datasets"))
    if int(pretrain.get("seed", 0)) != int(finetune.get("seed", 0)):
        raise ValueError("pretrain.seed and finetune.seed differ: the held-out clips would differ")
    if pretrain.get("source") in ("synthme", "manifest"):
        pretrain["holdout_clips"] = holdout
    finetune["holdout_clips"] = holdout
    manifest = held_out_manifest(params, work)
    times = {}
    tic = time.process_time()
    run_stage("pretrain", params["motion"], pretrain, out=work / "pretrain.pt", checkpoints=work / "ckpt",
              live_dir=None, progress=False)
    times["pretrain_cpu_s"] = round(time.process_time() - tic, 1)
    tic = time.process_time()
    history = run_stage("finetune", params["motion"], finetune, out=work / "finetune.pt",
                        checkpoints=work / "ckpt", live_dir=None, init=work / "pretrain.pt", progress=False)
    times["finetune_cpu_s"] = round(time.process_time() - tic, 1)
    tic = time.process_time()
    variants = {"selfme": {"method": "selfme", "gamma": 1.0}}
    result = evaluate_methods(manifest, variants, extract=params["extract"], model_path=work / "finetune.pt",
                              plots_dir=plots, plot_clips=4 if plots else 0, progress=False)
    times["eval_cpu_s"] = round(time.process_time() - tic, 1)
    last = history[-1]
    return {"epe": result["variants"]["selfme"]["epe"], "clips": result["clips"],
            "val_l1": {k[4:]: round(v, 5) for k, v in last.items() if k.startswith("val_l1")},
            "train_l1_reconstruction": round(last["l1_reconstruction"], 5), **times,
            "baselines": baselines(manifest, params["extract"], cache)}


def table(log_path: Path) -> str:
    """The log as a markdown table, one row per run (the last run of a name wins)."""
    records: dict[str, dict[str, Any]] = {}
    for line in log_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["name"]] = record
    rows = ["| run | change | held-out expression EPE (px) | all / face EPE | val L1 recon / warped / identity "
            "| train CPU s |", "|---|---|---|---|---|---|"]
    for r in records.values():
        e, v = r["epe"], r["val_l1"]
        rows.append(f"| {r['name']} | {' '.join(r['set']) or '(profile as is)'} | {e['expression']:.3f} | "
                    f"{e['all']:.3f} / {e['face']:.3f} | {v['l1_reconstruction']:.4f} / {v['l1_warped']:.4f} / "
                    f"{v['l1_identity']:.4f} | {r['pretrain_cpu_s'] + r['finetune_cpu_s']:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override (repeatable)")
    parser.add_argument("--name", help="the run's name (required unless --table)")
    parser.add_argument("--table", action="store_true", help="print the log as a markdown table and exit")
    parser.add_argument("--holdout", type=int, default=12, help="held-out clips (never trained on)")
    parser.add_argument("--log", default="docs/motion_study.jsonl")
    parser.add_argument("--plots", default=None, help="write the held-out flow PNGs into this folder")
    args = parser.parse_args(argv)
    if args.table:
        print(table(Path(args.log)))
        return 0
    if not args.name:
        parser.error("--name is required")
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    params = yaml.safe_load(Path(args.params).read_text(encoding="utf-8"))
    for assignment in args.set:
        apply_override(params, assignment)
    log_path = Path(args.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="motion_study_") as tmp:
        record = {"name": args.name, "set": args.set, "holdout": args.holdout,
                  **run(copy.deepcopy(params), holdout=args.holdout, work=Path(tmp),
                        plots=Path(args.plots) if args.plots else None, cache=CACHE)}
    with log_path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    b = record["baselines"]
    print(f"{args.name}: expression EPE {record['epe'].get('expression'):.4f} (zero {b['zero']['expression']:.4f}, "
          f"TV-L1 {b['tvl1']['expression']:.4f}), val L1 {record['val_l1']}, "
          f"cpu {record['pretrain_cpu_s'] + record['finetune_cpu_s']:.0f} s train")
    return 0


if __name__ == "__main__":
    sys.exit(main())
