"""params.yaml is written in the form `dvc exp run -S key=value` writes back, so that an experiment's
params diff is the one line it changed (a flow-style mapping or list would be rewritten whole)."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILES = ["params.yaml", "configs/paper.yaml", "configs/cpu.yaml", "configs/realflow.yaml"]


def _profiles():
    return [p for p in PROFILES if (REPO / p).is_file()]


def _changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.mark.parametrize("name", _profiles())
def test_dvc_set_param_changes_one_line(tmp_path, name):
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` runs on the params file

    path = tmp_path / "params.yaml"
    shutil.copy(REPO / name, path)
    before = path.read_text(encoding="utf-8")
    apply_overrides(path, ["scvit.omega=0.123"])
    changed = _changed_lines(before, path.read_text(encoding="utf-8"))
    assert len(changed) == 2, f"{name}: -S scvit.omega rewrote {len(changed) // 2} lines:\n" + "\n".join(changed[:20])
    assert changed[0].split("#")[0].strip() == "-  omega: " + changed[0].split("omega:")[1].split("#")[0].strip()
    assert "omega: 0.123" in changed[1]


@pytest.mark.parametrize("name", _profiles())
def test_params_file_is_a_fixed_point_of_dvcs_writer(tmp_path, name):
    # Loading and writing back through DVC's own YAML writer (as every -S does) changes nothing at all.
    from dvc.utils.serialize import modify_yaml

    path = tmp_path / "params.yaml"
    shutil.copy(REPO / name, path)
    before = path.read_text(encoding="utf-8")
    with modify_yaml(path):
        pass
    assert _changed_lines(before, path.read_text(encoding="utf-8")) == []
