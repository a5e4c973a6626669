"""DVC stage extract@<dataset>: onset -> apex motion of every clip, data/motion/<method>/<dataset>/.

    python -m stages.extract --dataset synthme

Reads ``motion.method`` (selfme | tvl1 | farneback | dis) and the ``extract`` section of params.yaml;
input data/faces/<dataset>/manifest.csv (and models/motion/finetune.pt for selfme). Writes the motion
files, their sidecars and index.csv, metrics/motion/<dataset>.json (figures of this run: folding, time
per pair, EPE where a ground truth exists) and flow-colour PNGs in metrics/plots/motion/<dataset>/.
"""

from __future__ import annotations

import argparse
import sys

from selfme.extract.stage import run
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
    return run("extract", params=load_params("motion", "extract"), **vars(args))


if __name__ == "__main__":
    sys.exit(guarded(main))
