"""``selfme loso``: LOSO evaluation of SCViT on motions (the loso stage's function, without DVC).

    selfme loso --motions DIR --labels CSV --out DIR [--dataset casme2[,smic]] [--protocol composite]
                [--classes megc3] [--timing FILE] [-S scvit.omega=0 -S loso.seeds=[0,1,2] ...]

Parameters start from the ``scvit`` and ``loso`` sections of --params (params.yaml in the current
folder when present, else the paper's settings) and are overridden by ``-S section.key=value``;
``--protocol`` (per_dataset | composite) overrides ``loso.protocol``. Without --dataset every dataset
of the source runs: each on its own (per_dataset) or pooled (composite, MEGC2019). Fold predictions go
to ``<out>/<dataset>/seed_<s>/<subject>.csv``; ``<out>/summary.json`` has metrics/summary.json's schema
(per dataset, average and, with several datasets, composite: UF1/UAR mean and std over the seeds).
Samples the source excludes are listed in ``<out>/<dataset>/excluded.csv``. Run times and host facts are
logged, and written to --timing FILE when given (never into the results).
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from selfme.datasets import class_names
from selfme.io import write_json
from selfme.metrics.aggregate import mean_pm_std
from selfme.scvit.factory import SCViTConfig
from selfme.scvit.loso import LosoResult, run_loso
from selfme.scvit.results import timing_report
from selfme.scvit.sources import Samples, combine_samples, load_samples
from selfme.scvit.train import PROTOCOLS, LosoConfig

log = logging.getLogger(__name__)
SECTIONS = ("scvit", "loso")


def apply_overrides(params: Mapping[str, Mapping[str, Any]], overrides: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``section.key=value`` overrides (values parsed as YAML: 0.1, true, null, [dx, dy])."""
    out = {s: dict(copy.deepcopy(params.get(s) or {})) for s in SECTIONS}
    for item in overrides:
        name, sep, value = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or section not in SECTIONS or not key:
            raise ValueError(f"override {item!r} is not section.key=value with section in {SECTIONS}")
        out[section][key] = yaml.safe_load(value)
    return out


def read_params(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """The scvit and loso sections of a params file (missing sections: the dataclasses' defaults)."""
    if path is None:
        return {s: {} for s in SECTIONS}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {s: dict(params.get(s) or {}) for s in SECTIONS}


def loso(*, samples: Samples, out: str | Path, scvit: Mapping[str, Any], loso_params: Mapping[str, Any],
         classes: str = "megc3", datasets: Sequence[str] | None = None, protocol: str | None = None,
         progress: bool = True) -> LosoResult:
    """Run every (seed, fold) of ``datasets`` (default all of ``samples``) and return the summary (stage
    and command). ``classes``: the class protocol (megc3); ``protocol`` overrides ``loso.protocol``."""
    model_config = SCViTConfig.from_mapping(scvit)
    config = LosoConfig.from_mapping({**loso_params, **({"protocol": protocol} if protocol else {})})
    n_classes = len(class_names(classes))
    log.info("loso (%s): %d samples, %d subjects of %s, %s, omega %g, tau %g, %d epochs, seeds %s", config.protocol,
             len(samples), len(samples.frame[["dataset", "subject"]].drop_duplicates()), ", ".join(samples.datasets),
             model_config.model_name, model_config.omega, model_config.tau, config.epochs, list(config.seeds))
    return run_loso(samples, out=out, model_config=model_config, config=config, num_classes=n_classes,
                    datasets=datasets, progress=progress)


def pipeline_samples(*, dataset: str, motions: str, datasets: Sequence[str], protocol: str,
                     labels: str | Path | None = None, classes: str = "megc3") -> Samples:
    """The training pool of stage loso@<dataset>: its own samples (per_dataset) or every dataset's of the
    run (composite). ``motions`` may name ``{dataset}`` (data/motion/selfme/{dataset}/index.csv); each
    dataset's samples are named after its params.yaml key."""
    names = [dataset] if protocol == "per_dataset" else list(datasets)
    if dataset not in names:
        raise ValueError(f"dataset {dataset!r} is not in params.yaml's datasets {names}")
    parts = [load_samples(motions.replace("{dataset}", name), labels=labels, dataset=name,
                          protocol=classes).with_dataset(name) for name in names]
    return combine_samples(parts)


def print_result(result: LosoResult, out: str | Path) -> None:
    for scope, entry in result.summary.items():
        counts = f" ({entry['n_samples']} samples, {entry['n_folds']} folds)" if "n_samples" in entry else ""
        print(f"LOSO {scope}: UF1 {mean_pm_std(entry['uf1'], entry['uf1_std'])}  "
              f"UAR {mean_pm_std(entry['uar'], entry['uar_std'])}  over {entry['n_seeds']} seed(s){counts}")
    print(f"{len(result.ran)} run(s) trained, {len(result.skipped)} skipped; {result.seconds:.1f} s")
    if len(result.excluded):
        print(f"{len(result.excluded)} sample(s) excluded by the source, listed in {out}/<dataset>/excluded.csv")
    print(f"fold predictions in {out}/<dataset>/seed_<s>/<subject>.csv, MEGC2019 logs in "
          f"{out}/<dataset>/seed_<s>/megc_log.txt")


def run(args: argparse.Namespace) -> int:
    params_path = args.params
    if params_path is None and Path("params.yaml").is_file():
        params_path = "params.yaml"
    params = apply_overrides(read_params(params_path), args.set or [])
    log.info("loso: parameters from %s", params_path or "the built-in (paper) defaults")
    samples = load_samples(args.motions, labels=args.labels, dataset=args.dataset, protocol=args.classes)
    result = loso(samples=samples, out=args.out, classes=args.classes, protocol=args.protocol,
                  scvit=params["scvit"], loso_params=params["loso"], progress=not args.no_progress)
    write_json(Path(args.out) / "summary.json", result.summary)
    if args.timing:
        write_json(args.timing, {"command": "selfme loso", **timing_report(result)})
    print_result(result, args.out)
    print(f"summary: {Path(args.out) / 'summary.json'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("loso", help="leave-one-subject-out SCViT on motions or motion images")
    p.add_argument("--motions", required=True,
                   help="motion index CSV (motion_path column), a face-crop folder with ground-truth motion, "
                        "or (with --labels) a folder of <subject>_<clip>.png motion images")
    p.add_argument("--labels", default=None, help="labels CSV for motion images: db, subject, clip, label")
    p.add_argument("--out", required=True, help="results folder: <out>/<dataset>/seed_<s>/<subject>.csv, summary.json")
    p.add_argument("--dataset", default=None,
                   help="keep these datasets' rows (casme2, smic_hs/smic, samm; several: casme2,smic); default all")
    p.add_argument("--protocol", default=None, choices=PROTOCOLS,
                   help="LOSO protocol (default loso.protocol): per_dataset trains each dataset alone, composite "
                        "pools every dataset, one fold per subject across datasets (MEGC2019)")
    p.add_argument("--classes", default="megc3", help="class protocol of the labels (megc3: 3 classes)")
    p.add_argument("--params", default=None, help="params file (default: ./params.yaml when present)")
    p.add_argument("-S", "--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a scvit or loso parameter, e.g. -S scvit.omega=0 -S loso.epochs=5")
    p.add_argument("--timing", default=None, help="write run times and host facts to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
