"""Which project files a module runs: its import closure, computed from the source.

Every ``import`` and ``from ... import`` of a project module, at any depth, including lazy imports
inside functions and relative imports, plus the ``__init__.py`` of every package on the way. Used for
dvc.yaml's code deps (tests/test_dvc_deps.py) and for the code digest of cached items
(``selfme.cache.code_digest``), so both see the same files.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Iterable, Sequence

#: The repository root when the package runs from its checkout (``pip install -e .``).
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def module_file(module: str, *, root: Path, packages: Sequence[str]) -> Path | None:
    """The file of project module ``module`` under ``root`` (a package: its __init__.py); None for a
    module outside ``packages`` or a name that is not a module (``from pkg import function``)."""
    if module.split(".")[0] not in packages:
        return None
    base = Path(root).joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _package_of(path: Path, root: Path) -> str:
    """The package a file's relative imports start from."""
    dotted = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name == "__init__.py":
        return dotted.rsplit(".", 1)[0]
    return dotted.rsplit(".", 1)[0] if "." in dotted else ""


@functools.lru_cache(maxsize=4096)
def _parsed_imports(source: str, package: str, filename: str) -> frozenset[str]:
    """Module names a source text imports (memoised on the text itself, so an edit is always seen)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return frozenset(found)


def imported_modules(path: Path, *, root: Path) -> frozenset[str]:
    """Every module name ``path`` imports, anywhere in the file (absolute names)."""
    path = Path(path)
    return _parsed_imports(path.read_text(encoding="utf-8"), _package_of(path, Path(root)), str(path))


def import_closure(scripts: Path | Iterable[Path], *, root: Path = PROJECT_ROOT,
                   packages: Sequence[str] = ("selfme",)) -> set[Path]:
    """Every project file that running ``scripts`` imports, directly or transitively (themselves too)."""
    root = Path(root)
    packages = tuple(packages)
    todo = [Path(scripts)] if isinstance(scripts, (str, Path)) else [Path(s) for s in scripts]
    resolve = functools.cache(lambda module: module_file(module, root=root, packages=packages))  # this call's
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path, root=root):
            target = resolve(module)
            if target is None:
                continue
            parts = module.split(".")
            inits = [resolve(".".join(parts[:i])) for i in range(1, len(parts))]
            todo.extend(f for f in [target, *inits] if f is not None and f not in seen)
    return seen
