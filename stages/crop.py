"""DVC stage crop@<dataset>: aligned face crops of every clip, data/faces/<dataset>/.

    python -m stages.crop --dataset synthme

Reads ``crop`` and ``datasets.<dataset>.root`` from params.yaml; input data/manifests/<dataset>.csv.
When the dataset folder has ``ground_truth/`` (SynthME), its onset->apex motion is mapped into crop
pixels too. Exits non-zero when more than ``crop.max_failure_rate`` of the clips could not be cropped.
"""

from __future__ import annotations

import argparse
import sys

from selfme.face.stage import run
from selfme.log import setup_logging
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key of params.yaml's datasets section")
    parser.add_argument("--manifest-dir", default="data/manifests")
    parser.add_argument("--out-dir", default="data/faces")
    args = parser.parse_args(argv)
    setup_logging()
    return run("crop", params=load_params("datasets", "crop"), **vars(args))


if __name__ == "__main__":
    sys.exit(guarded(main))
