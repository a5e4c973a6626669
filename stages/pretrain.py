"""DVC stage pretrain: the self-supervised motion learner on VoxCeleb (or, in the demo, SynthME crops
with synthetic head motion).

    python -m stages.pretrain

Reads params.yaml's ``motion`` (architecture) and ``pretrain`` sections; writes models/motion/pretrain.pt,
resumable checkpoints under models/motion/checkpoints/pretrain/<params hash>/ and dvclive curves in
dvclive/pretrain.
"""

from __future__ import annotations

import argparse
import sys

from selfme.log import setup_logging
from selfme.motion.stage import run
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="models/motion/pretrain.pt")
    parser.add_argument("--checkpoints", default="models/motion/checkpoints/pretrain",
                        help="resumable checkpoints go to <this>/<params hash>/")
    parser.add_argument("--live", default="dvclive/pretrain", help="dvclive folder")
    args = parser.parse_args(argv)
    setup_logging()
    return run("pretrain", params=load_params("motion", "pretrain"), **vars(args))


if __name__ == "__main__":
    sys.exit(guarded(main))
