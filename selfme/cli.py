"""The ``selfme`` command: one sub-command per pipeline step, each the same function its stage calls."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from selfme.config import pin_blas_threads
from selfme.log import setup_logging

#: Modules that contribute a sub-command through ``register(subparsers)``.
COMMAND_MODULES = (
    "selfme.synth.cli",
    "selfme.datasets.cli",
    "selfme.metrics.cli",
    "selfme.face.cli",
    "selfme.report_cli",
    "selfme.motion.cli",
    "selfme.extract.cli",
    "selfme.extract.export_cli",
    "selfme.scvit.cli",
    "selfme.predict.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfme", description=__doc__)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    pin_blas_threads()  # the environment's OMP_NUM_THREADS must not change results
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        # Bad input: one clear line, no stack trace (set SELFME_LOG=DEBUG for the trace).
        logging.getLogger("selfme").debug("failure", exc_info=True)
        print(f"selfme {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
