"""No function in selfme/ or stages/ over 60 lines (the developer guide's limit), counted from the
``def`` line to the function's last line (signature, docstring and body; nested functions count inside
their parent and on their own)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 60


def long_functions(root: Path = REPO, limit: int = LIMIT) -> list[tuple[int, str]]:
    """(lines, ``path:line name``) of every function longer than ``limit`` lines, longest first."""
    found = []
    for folder in ("selfme", "stages"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        found.append((lines, f"{path.relative_to(root).as_posix()}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def test_the_counter_counts_def_to_last_line(tmp_path):
    (tmp_path / "selfme").mkdir()
    (tmp_path / "stages").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    (tmp_path / "selfme" / "m.py").write_text(f"def fits():\n{body}\n\n\ndef over():\n{body}\n    y = 1\n")
    assert long_functions(tmp_path) == [(61, "selfme/m.py:63 over")]


def test_no_function_over_60_lines():
    found = long_functions()
    assert not found, "functions over 60 lines: " + ", ".join(f"{name} ({n})" for n, name in found)


if __name__ == "__main__":  # python tests/test_function_length.py [LIMIT]: list them
    import sys

    for n, name in long_functions(limit=int(sys.argv[1]) if len(sys.argv) > 1 else LIMIT):
        print(n, name)
