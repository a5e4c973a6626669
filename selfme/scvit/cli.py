"""``selfme loso``: LOSO evaluation of SCViT on motions (the loso stage's function, without DVC).

    selfme loso --motions DIR --labels CSV --out DIR [--dataset casme2] [-S scvit.omega=0 ...]

Parameters start from the ``scvit`` and ``loso`` sections of --params (params.yaml in the current
folder when present, else the paper's settings) and are overridden by ``-S section.key=value``.
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from selfme.datasets import class_names
from selfme.scvit.factory import SCViTConfig
from selfme.scvit.loso import LosoResult, run_loso
from selfme.scvit.sources import load_samples
from selfme.scvit.train import LosoConfig

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


def loso(*, motions: str | Path, out: str | Path, scvit: Mapping[str, Any], loso_params: Mapping[str, Any],
         labels: str | Path | None = None, dataset: str | None = None, protocol: str = "megc3",
         progress: bool = True) -> LosoResult:
    """Load the samples, run every LOSO fold, log and return the pooled scores (stage and command)."""
    model_config = SCViTConfig.from_params(scvit)
    config = LosoConfig.from_params(loso_params)
    samples = load_samples(motions, labels=labels, dataset=dataset, protocol=protocol)
    n_classes = len(class_names(protocol))
    log.info("loso: %d samples, %d subjects, %s, omega %g, tau %g, %d epochs", len(samples),
             samples.frame["subject"].nunique(), model_config.model_name, model_config.omega, model_config.tau,
             config.epochs)
    result = run_loso(samples, out=out, model_config=model_config, config=config, num_classes=n_classes,
                      progress=progress)
    return result


def print_result(result: LosoResult, out: str | Path) -> None:
    s = result.scores
    print(f"LOSO {result.predictions['db'].iloc[0]}: UF1 {s.uf1:.4f}  UAR {s.uar:.4f}  "
          f"({s.n} samples, {result.predictions['subject'].nunique()} folds; {len(result.ran)} trained, "
          f"{len(result.skipped)} skipped; {result.seconds:.1f} s)")
    print(f"fold predictions in {out}/<subject>.csv, MEGC2019 log {Path(out) / 'megc_log.txt'}")


def run(args: argparse.Namespace) -> int:
    params_path = args.params
    if params_path is None and Path("params.yaml").is_file():
        params_path = "params.yaml"
    params = apply_overrides(read_params(params_path), args.set or [])
    log.info("loso: parameters from %s", params_path or "the built-in (paper) defaults")
    result = loso(motions=args.motions, labels=args.labels, out=args.out, dataset=args.dataset,
                  protocol=args.protocol, scvit=params["scvit"], loso_params=params["loso"],
                  progress=not args.no_progress)
    print_result(result, args.out)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("loso", help="leave-one-subject-out SCViT on motions or motion images")
    p.add_argument("--motions", required=True,
                   help="motion index CSV (motion_path column), a face-crop folder with ground-truth motion, "
                        "or (with --labels) a folder of <subject>_<clip>.png motion images")
    p.add_argument("--labels", default=None, help="labels CSV for motion images: db, subject, clip, label")
    p.add_argument("--out", required=True, help="folder for <subject>.csv fold predictions")
    p.add_argument("--dataset", default=None, help="keep one dataset's rows (casme2, smic_hs/smic, samm, ...)")
    p.add_argument("--protocol", default="megc3", help="class protocol (megc3: 3 classes)")
    p.add_argument("--params", default=None, help="params file (default: ./params.yaml when present)")
    p.add_argument("-S", "--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a scvit or loso parameter, e.g. -S scvit.omega=0 -S loso.epochs=5")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
