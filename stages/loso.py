"""DVC stage loso@<dataset>: leave-one-subject-out SCViT, results/<dataset>/seed_<s>/<subject>.csv.

    python -m stages.loso --dataset casme2 --motions data/motion/selfme/{dataset}/index.csv

Reads the ``scvit`` and ``loso`` sections, ``prepare.protocol`` (the classes) and, for
``loso.protocol: composite``, the ``datasets`` section from params.yaml. --motions is the extract
stage's motion index CSV (or the face-crop folder whose manifest names SynthME's ground-truth
motion); ``{dataset}`` in it stands for a dataset's key. per_dataset: the folds of this dataset's
subjects train on its own other subjects. composite: the folds of THIS dataset's subjects train on
every other subject of every dataset of the run, so the loso@<dataset> stages together are one
composite LOSO run (MEGC2019) and the aggregate stage scores its slices and the whole. Runs whose
results match the parameters and data are skipped. Run times and host facts go to --timing
(metrics/timing/loso_<dataset>.json), outside the results and not a DVC output: they differ between
identical runs, and dvc.lock records the hash of every output. Bad input is one line, exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from selfme.log import setup_logging
from selfme.scvit.stage import run
from stages._params import guarded, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key of params.yaml's datasets section")
    parser.add_argument("--motions", default="data/faces/{dataset}",
                        help="motion index CSV or folder; {dataset} stands for a dataset key")
    parser.add_argument("--labels", default=None, help="labels CSV when --motions is a folder of motion images")
    parser.add_argument("--results", default="results", help="results root: <results>/<dataset>/seed_<s>/")
    parser.add_argument("--timing", default="metrics/timing/loso_{dataset}.json",
                        help="run times and host facts ({dataset}: the dataset key; empty: log only)")
    args = parser.parse_args(argv)
    setup_logging()
    return run("loso", params=load_params("scvit", "loso", "prepare", optional=("datasets",)), **vars(args))


if __name__ == "__main__":
    sys.exit(guarded(main))
