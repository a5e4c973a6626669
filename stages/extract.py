"""DVC stage extract@<dataset>: onset -> apex motion of every clip, data/motion/<method>/<dataset>/.

    python -m stages.extract --dataset synthme

Reads ``motion.method`` (selfme | tvl1 | farneback | dis) and the ``extract`` section of params.yaml;
input data/faces/<dataset>/manifest.csv (and models/motion/finetune.pt for selfme). Writes the motion
files, their sidecars and index.csv, metrics/motion/<dataset>.json (figures of this run: folding, time
per pair, EPE where a ground truth exists) and flow-colour PNGs in metrics/plots/motion/<dataset>/.
"""

from __future__ import annotations

import argparse
import json
import sys

from selfme.config import set_threads
from selfme.extract import ExtractConfig, extract_dataset
from selfme.motion.config import MotionConfig
from selfme.log import setup_logging
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a key of params.yaml's datasets section")
    parser.add_argument("--faces-dir", default="data/faces")
    parser.add_argument("--out-dir", default="data/motion")
    parser.add_argument("--model", default="models/motion/finetune.pt")
    parser.add_argument("--metrics-dir", default="metrics/motion")
    parser.add_argument("--plots-dir", default="metrics/plots/motion")
    parser.add_argument("--timing-dir", default="metrics/timing",
                        help="run times (not a DVC output: they differ between identical runs)")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("motion", "extract")
    config = ExtractConfig.from_mapping(params["extract"], method=MotionConfig.from_mapping(params["motion"]).method)
    set_threads(config.threads)
    summary = extract_dataset(f"{args.faces_dir}/{args.dataset}/manifest.csv",
                              f"{args.out_dir}/{config.method}/{args.dataset}", config=config,
                              model_path=args.model if config.method == "selfme" else None,
                              metrics_path=f"{args.metrics_dir}/{args.dataset}.json",
                              plots_dir=f"{args.plots_dir}/{args.dataset}",
                              timing_path=f"{args.timing_dir}/extract_{args.dataset}.json")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
