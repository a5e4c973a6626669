"""dvc.yaml's code deps are the stage scripts' import closures, so that editing any module a stage runs
makes `dvc status` list that stage. The closure is computed from the source by ``selfme.imports`` (every
`import` and `from ... import` of a project module, at any depth, including lazy imports inside
functions, plus the `__init__.py` of every package on the way; the same closure keys the item caches),
not from a list kept by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from selfme.imports import import_closure as _closure
from selfme.imports import module_file

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("selfme", "stages")


def _module_file(module: str) -> Path | None:
    return module_file(module, root=REPO, packages=PROJECT_PACKAGES)


def import_closure(script: Path) -> set[Path]:
    """Every project file that running ``script`` imports, directly or transitively."""
    return _closure(script, root=REPO, packages=PROJECT_PACKAGES)


def _stages() -> dict[str, dict]:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    return {name: stage.get("do", stage) for name, stage in dvc["stages"].items()}


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_deps_cover_the_scripts_import_closure(name):
    body = _stages()[name]
    module = body["cmd"].split()[2]
    script = _module_file(module)
    assert script is not None, f"{name}: {module} is not a project module"
    deps = [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps", [])]
    missing = sorted(str(f.relative_to(REPO)) for f in import_closure(script) if not _covered(f, deps))
    assert not missing, f"dvc.yaml stage {name} imports {missing} but does not list them in its deps"


def test_the_closure_follows_lazy_and_relative_imports(tmp_path, monkeypatch):
    # A self-check of the closure on the repository itself: the loso stage runs the LOSO code through
    # selfme.scvit.cli, which imports selfme.scvit.loso, which scores with selfme.metrics.
    closure = {str(p.relative_to(REPO)) for p in import_closure(REPO / "stages" / "loso.py")}
    assert {"selfme/scvit/cli.py", "selfme/scvit/loso.py", "selfme/scvit/__init__.py",
            "selfme/__init__.py"} <= closure
    assert any(p.startswith("selfme/metrics/") for p in closure)
