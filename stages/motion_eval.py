"""DVC stage motion_eval: every motion method against SynthME's ground-truth motion, metrics/motion.json.

    python -m stages.motion_eval

Reads the ``motion_eval`` section (dataset, variants: name -> overrides of the ``extract`` section,
plot_clips, max_clips) and ``extract``; the clips that the pretrain and finetune stages held out
(``holdout_clips``) are scored apart as well (``epe_held_out``) and plotted first; input
data/faces/<dataset>/manifest.csv and, for SelfME variants, models/motion/finetune.pt. Writes
metrics/motion.json (EPE per region, folding before/after scaling and squaring, time per pair, per
variant) and side-by-side flow-colour PNGs in metrics/plots/motion_eval/.
"""

from __future__ import annotations

import argparse
import sys

from selfme.extract.stage import run
from selfme.log import setup_logging
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces-dir", default="data/faces")
    parser.add_argument("--model", default="models/motion/finetune.pt")
    parser.add_argument("--metrics", default="metrics/motion.json")
    parser.add_argument("--plots-dir", default="metrics/plots/motion_eval")
    parser.add_argument("--timing", default="metrics/timing/motion_eval.json",
                        help="run times (not a DVC output: they differ between identical runs)")
    args = parser.parse_args(argv)
    setup_logging()
    return run("motion_eval", params=load_params("extract", "motion_eval", "pretrain", "finetune", "datasets"),
               **vars(args))


if __name__ == "__main__":
    sys.exit(guarded(main))
