"""Where code lives: one way to do each thing (issue 13, deliverable 6), checked from the source."""

from __future__ import annotations

from pathlib import Path

from test_dvc_deps import import_closure

REPO = Path(__file__).resolve().parents[1]


def test_extraction_does_not_import_the_motion_training_data():
    # The learner owns its preprocessing (selfme.motion.preprocess); extraction needs no training-data code.
    closure = set()
    for module in sorted((REPO / "selfme" / "extract").glob("*.py")):
        closure |= {p.relative_to(REPO).as_posix() for p in import_closure(module)}
    assert "selfme/motion/preprocess.py" in closure
    assert "selfme/motion/data.py" not in closure
