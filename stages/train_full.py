"""DVC stage train_full: SCViT trained on ALL subjects of a dataset, packed into a model bundle.

    python -m stages.train_full --dataset synthme
    python -m stages.train_full --dataset synthme -S scvit.omega=0 --out models/bundle/synthme_nosc.pt

Reads the ``crop``, ``motion``, ``extract``, ``scvit`` and ``loso`` sections and ``prepare.protocol``
from params.yaml (``-S section.key=value`` overrides scvit / loso keys, e.g. for the no-SC bundle that
``selfme visualize`` compares against). Inputs: the extract stage's motions
data/motion/<method>/<dataset>/index.csv and models/motion/finetune.pt; output
models/bundle/<dataset>.pt, the file ``selfme predict --model`` reads.
"""

from __future__ import annotations

import argparse
import sys

from selfme.log import setup_logging
from selfme.predict.stage import run
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a key of params.yaml's datasets section")
    parser.add_argument("--motions", default=None, help="default data/motion/<motion.method>/<dataset>/index.csv")
    parser.add_argument("--model", default="models/motion/finetune.pt", help="the motion learner to pack")
    parser.add_argument("--out", default=None, help="default models/bundle/<dataset>.pt")
    parser.add_argument("-S", "--set", dest="overrides", action="append", metavar="SECTION.KEY=VALUE",
                        help="override a scvit or loso parameter, e.g. -S scvit.omega=0")
    args = parser.parse_args(argv)
    setup_logging()
    return run("train_full", params=load_params("crop", "motion", "extract", "scvit", "loso", "prepare"), **vars(args))


if __name__ == "__main__":
    sys.exit(guarded(main))
