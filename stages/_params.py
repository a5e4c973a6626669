"""Reading a stage's section of params.yaml (the file ``dvc exp run -S`` edits), and the stage entry guard."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from selfme.config import ParamsError, did_you_mean, pin_blas_threads


def load_params(*sections: str, path: str | Path = "params.yaml", optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return the named top-level sections of params.yaml, and those of ``optional`` that it has (a
    missing section or a file YAML cannot read is a :class:`ParamsError`, one line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run stages from the repository root")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    for section in sections:
        if section not in params:
            raise ParamsError(f"{section}: missing section in {path}{did_you_mean(section, params)}")
    return {s: params[s] for s in (*sections, *(o for o in optional if o in params))}


def guarded(main: Callable[[], int], *, name: str | None = None) -> int:
    """Run a stage's ``main``; a :class:`ParamsError` (a bad params key or value) becomes one line on
    stderr and exit code 2, no traceback (SELFME_LOG=DEBUG logs the trace). BLAS threads are pinned
    first, so that the environment cannot change a stage's results (``pin_blas_threads``)."""
    pin_blas_threads()
    try:
        return int(main() or 0)
    except ParamsError as exc:
        logging.getLogger("selfme").debug("params error", exc_info=True)
        module = getattr(main, "__module__", "__main__")
        stage = name or (Path(sys.argv[0]).stem if module == "__main__" else module.rpartition(".")[2])
        print(f"{stage}: error: {exc}", file=sys.stderr)
        return 2
