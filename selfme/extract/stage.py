"""The extract@<dataset> and motion_eval stages as one function (the stage scripts only parse their paths
and read params.yaml)."""

from __future__ import annotations

import json
from typing import Any, Mapping

from selfme.config import set_threads
from selfme.extract.config import ExtractConfig, MotionEvalConfig
from selfme.extract.dataset import extract_dataset
from selfme.extract.evaluate import evaluate_methods
from selfme.motion.config import MotionConfig
from selfme.motion.holdout import held_out_clips

STAGES = ("extract", "motion_eval")


def run(stage: str, *, params: Mapping[str, Any], **paths: str) -> int:
    """``extract``: the onset -> apex motion of every clip of one dataset (:func:`extract`);
    ``motion_eval``: every motion method against SynthME's ground truth (:func:`motion_eval`)."""
    if stage not in STAGES:
        raise ValueError(f"{__name__} runs the stages {STAGES}, not {stage!r}")
    return (extract if stage == "extract" else motion_eval)(params=params, **paths)


def extract(*, params: Mapping[str, Any], dataset: str, faces_dir: str = "data/faces",
            out_dir: str = "data/motion", model: str = "models/motion/finetune.pt",
            metrics_dir: str = "metrics/motion", plots_dir: str = "metrics/plots/motion",
            timing_dir: str = "metrics/timing") -> int:
    """Motions, sidecars and index.csv of ``<faces_dir>/<dataset>`` into ``<out_dir>/<method>/<dataset>/``
    (params: ``motion``, ``extract``), the run's figures into ``<metrics_dir>/<dataset>.json``, flow PNGs
    into ``<plots_dir>/<dataset>/`` and run times into ``<timing_dir>/extract_<dataset>.json``."""
    config = ExtractConfig.from_mapping(params["extract"], method=MotionConfig.from_mapping(params["motion"]).method)
    set_threads(config.threads)
    summary = extract_dataset(f"{faces_dir}/{dataset}/manifest.csv", f"{out_dir}/{config.method}/{dataset}",
                              config=config, model_path=model if config.method == "selfme" else None,
                              metrics_path=f"{metrics_dir}/{dataset}.json", plots_dir=f"{plots_dir}/{dataset}",
                              timing_path=f"{timing_dir}/extract_{dataset}.json")
    print(json.dumps(summary, indent=2))
    return 0


def motion_eval(*, params: Mapping[str, Any], faces_dir: str = "data/faces",
                model: str = "models/motion/finetune.pt", metrics: str = "metrics/motion.json",
                plots_dir: str = "metrics/plots/motion_eval",
                timing: str = "metrics/timing/motion_eval.json") -> int:
    """Every variant of ``motion_eval.variants`` on the clips of ``motion_eval.dataset`` with a ground
    truth (params: ``extract``, ``motion_eval``, ``pretrain``, ``finetune``, ``datasets``); the clips both
    training stages held out are scored apart and plotted first."""
    section = MotionEvalConfig.from_mapping(params["motion_eval"])
    ExtractConfig.from_mapping(params["extract"])  # the variants' base: bad keys fail before any clip
    set_threads(section.threads)
    held = held_out_clips(params["pretrain"], params["finetune"], params["datasets"])
    result = evaluate_methods(f"{faces_dir}/{section.dataset}/manifest.csv", section.variants,
                              extract=params["extract"], model_path=model, metrics_path=metrics,
                              plots_dir=plots_dir, plot_clips=section.plot_clips,
                              max_clips=section.max_clips, held_out=held, timing_path=timing)
    for name, figures in result["variants"].items():
        print(f"{name:>20}: EPE {figures['epe']}, held out {figures.get('epe_held_out')}, "
              f"folding {figures['folding_before_ss']:.4f} -> {figures['folding_after_ss']:.4f}, "
              f"{result['timing'][name]['pairs_per_second']:.2f} pairs/s")
    return 0
