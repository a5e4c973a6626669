"""DVC stage finetune: the pretrained motion learner fine-tuned on frame pairs of cropped ME clips.

    python -m stages.finetune

Reads params.yaml's ``motion`` and ``finetune`` sections (``finetune.data``: a face-crop folder with
manifest.csv, a list of them, or ``all``: data/faces/<name> of every entry of ``datasets``, pooled);
starts from models/motion/pretrain.pt; writes models/motion/finetune.pt, checkpoints under
models/motion/checkpoints/finetune/<params hash>/ and dvclive curves in dvclive/finetune.
"""

from __future__ import annotations

import argparse
import sys

from selfme.log import setup_logging
from selfme.motion.stage import run
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default="models/motion/pretrain.pt", help="the pretrained motion model")
    parser.add_argument("--out", default="models/motion/finetune.pt")
    parser.add_argument("--checkpoints", default="models/motion/checkpoints/finetune",
                        help="resumable checkpoints go to <this>/<params hash>/")
    parser.add_argument("--live", default="dvclive/finetune", help="dvclive folder")
    parser.add_argument("--faces-dir", default="data/faces", help="where finetune.data: all finds the crops")
    args = parser.parse_args(argv)
    setup_logging()
    return run("finetune", params=load_params("motion", "finetune", "datasets"), **vars(args))


if __name__ == "__main__":
    sys.exit(guarded(main))
