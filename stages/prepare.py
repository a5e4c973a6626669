"""DVC stage prepare@<dataset>: build data/manifests/<dataset>.csv from the dataset's sheet and frames.

    python -m stages.prepare --dataset synthme

Reads ``datasets.<dataset>`` (adapter, root, annotations) and ``prepare`` from params.yaml.
"""

from __future__ import annotations

import argparse
import sys

from selfme.config import ParamsError, did_you_mean
from selfme.datasets import build_manifest, write_manifest
from selfme.datasets.config import PrepareConfig, load_datasets
from selfme.log import setup_logging
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key of params.yaml's datasets section")
    parser.add_argument("--out-dir", default="data/manifests")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("datasets", "prepare")
    datasets = load_datasets(params["datasets"])
    if args.dataset not in datasets:
        raise ParamsError(f"datasets.{args.dataset}: missing entry{did_you_mean(args.dataset, datasets)}")
    entry = datasets[args.dataset]
    prep = PrepareConfig.from_mapping(params["prepare"])
    try:
        result = build_manifest(
            entry.adapter or args.dataset, entry.root, annotations=entry.annotations,
            protocol=prep.protocol, allow_missing_frames=prep.allow_missing_frames,
            apex_missing=prep.apex_missing)
    except (FileNotFoundError, ValueError) as exc:  # bad input data: one line naming the file
        print(f"prepare@{args.dataset}: error: {exc}", file=sys.stderr)
        return 2
    report = write_manifest(result, f"{args.out_dir}/{args.dataset}.csv")
    print(f"prepare@{args.dataset}: {report['n_samples']} samples, {report['n_subjects']} subjects, "
          f"{report['per_class']}, {report['n_excluded']} excluded")
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
