"""DVC stage ``synth``: generate the SynthME embedded dataset from params.yaml's ``synth`` section.

    python -m stages.synth --out data/raw/synthme
"""

from __future__ import annotations

import argparse
import sys

from selfme.log import setup_logging
from selfme.synth.stage import run
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/raw/synthme", help="output folder (replaced atomically)")
    parser.add_argument("--params", default="params.yaml", help="params file holding the 'synth' section")
    args = parser.parse_args(argv)
    setup_logging()
    return run("synth", params=load_params("synth", path=args.params), out=args.out)


if __name__ == "__main__":
    sys.exit(guarded(main))
