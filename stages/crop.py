"""DVC stage crop@<dataset>: aligned face crops of every clip, data/faces/<dataset>/.

    python -m stages.crop --dataset synthme

Reads ``crop`` and ``datasets.<dataset>.root`` from params.yaml; input data/manifests/<dataset>.csv.
When the dataset folder has ``ground_truth/`` (SynthME), its onset->apex motion is mapped into crop
pixels too. Exits non-zero when more than ``crop.max_failure_rate`` of the clips could not be cropped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfme.config import set_threads
from selfme.face import CropConfig, CropFailureRate, crop_dataset
from selfme.face.cli import print_summary
from selfme.log import setup_logging
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key of params.yaml's datasets section")
    parser.add_argument("--manifest-dir", default="data/manifests")
    parser.add_argument("--out-dir", default="data/faces")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("datasets", "crop")
    if args.dataset not in params["datasets"]:
        raise KeyError(f"params.yaml datasets has no entry {args.dataset!r}")
    config = CropConfig.from_mapping(params["crop"])
    set_threads(config.threads)
    gt_root = Path(params["datasets"][args.dataset]["root"], "ground_truth")
    try:
        summary = crop_dataset(f"{args.manifest_dir}/{args.dataset}.csv", f"{args.out_dir}/{args.dataset}",
                               config=config, ground_truth=gt_root if gt_root.is_dir() else None)
    except CropFailureRate as exc:
        print(f"crop@{args.dataset}: FAILED: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as exc:  # no manifest, or one without clips
        print(f"crop@{args.dataset}: error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
