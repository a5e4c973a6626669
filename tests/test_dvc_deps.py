"""dvc.yaml's code deps are the stage scripts' import closures, so that editing any module a stage runs
makes `dvc status` list that stage. The closure is computed here from the source (every `import` and
`from ... import` of a project module, at any depth, including lazy imports inside functions, plus the
`__init__.py` of every package on the way), not from a list kept by hand."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("selfme", "stages")


def _module_file(module: str) -> Path | None:
    """The repository file of a project module (package -> its __init__.py); None outside the project."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = REPO.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _package_inits(module: str) -> list[Path]:
    parts = module.split(".")
    return [f for i in range(1, len(parts)) if (f := _module_file(".".join(parts[:i]))) is not None]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0]
    else:
        package = package.rsplit(".", 1)[0] if "." in package else ""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return found


def import_closure(script: Path) -> set[Path]:
    """Every project file that running ``script`` imports, directly or transitively."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imported_modules(path):
            target = _module_file(module)
            for f in ([target] if target else []) + (_package_inits(module) if target else []):
                if f not in seen:
                    todo.append(f)
    return seen


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
