"""Reading a stage's section of params.yaml (the file ``dvc exp run -S`` edits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_params(*sections: str, path: str | Path = "params.yaml") -> dict[str, Any]:
    """Return the named top-level sections of params.yaml (a missing section is a clear error)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run stages from the repository root")
    params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [s for s in sections if s not in params]
    if missing:
        raise KeyError(f"params.yaml has no section(s) {missing}")
    return {s: params[s] for s in sections}
