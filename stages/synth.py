"""DVC stage ``synth``: generate the SynthME embedded dataset from params.yaml's ``synth`` section.

    python -m stages.synth --out data/raw/synthme
"""

from __future__ import annotations

import argparse
import sys

from selfme.log import setup_logging
from selfme.synth import SynthConfig, generate_synthme
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/raw/synthme", help="output folder (replaced atomically)")
    parser.add_argument("--params", default="params.yaml", help="params file holding the 'synth' section")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("synth", path=args.params)
    summary = generate_synthme(args.out, SynthConfig.from_mapping(params["synth"]))
    print(f"synthme: {summary['n_clips']} clips from {summary['n_subjects']} subjects "
          f"({summary['counts_per_emotion']}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
