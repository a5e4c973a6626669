"""Where code lives: one way to do each thing (issue 13, deliverable 6), checked from the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from test_dvc_deps import import_closure

REPO = Path(__file__).resolve().parents[1]


def test_extraction_does_not_import_the_motion_training_data():
    # The learner owns its preprocessing (selfme.motion.preprocess); extraction needs no training-data code.
    closure = set()
    for module in sorted((REPO / "selfme" / "extract").glob("*.py")):
        closure |= {p.relative_to(REPO).as_posix() for p in import_closure(module)}
    assert "selfme/motion/preprocess.py" in closure
    assert "selfme/motion/data.py" not in closure


def _root(node: ast.expr) -> str:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _private_uses(path: Path) -> list[str]:
    """``obj._name`` where obj is not our own object (``self._x``; ``self.backbone._x`` counts) nor torch's
    documented bases (``nn.modules.batchnorm._BatchNorm``): a reach into another library's private members."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.name}:{node.lineno} .{node.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            and _root(node.value) not in ("torch", "nn")]


def test_scvit_uses_no_private_timm_members():
    found = [use for f in sorted((REPO / "selfme" / "scvit").glob("*.py")) for use in _private_uses(f)]
    assert not found, found


def test_scvit_patch_embeddings_are_the_projection_output_and_tokens_timms_features():
    from selfme.scvit import SCViTConfig, create_scvit

    torch.manual_seed(0)
    model, _ = create_scvit(SCViTConfig(model_name="vit_tiny_patch16_224", img_size=32, patch_size=16, depth=1,
                                        embed_dim=32, num_heads=2, pretrained=False), num_classes=3, in_chans=2)
    model.eval()
    x = torch.randn(2, 2, 32, 32)
    features = model.forward_features(x)
    assert torch.equal(features.patches, model.backbone.patch_embed(x))  # x_p E, before E_pos
    assert torch.equal(features.tokens, model.backbone.forward_features(x))
    assert not model.backbone.patch_embed._forward_hooks  # the hook is gone after the call


def test_no_hand_written_samplers():
    # Sharding is torch's DistributedSampler; on one process it keeps the order 0, 1, 2, ... of before.
    found = []
    for path in sorted((REPO / "selfme").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any("Sampler" in ast.unparse(b) for b in node.bases):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert not found, found


STAGE_SCRIPTS = sorted(p.stem for p in (REPO / "stages").glob("*.py") if not p.stem.startswith("_"))


@pytest.mark.parametrize("name", STAGE_SCRIPTS)
def test_each_stage_script_is_its_paths_and_one_call_of_a_stage_run(name, monkeypatch):
    # The one stage contract: stages/X.py parses its paths and calls selfme.<package>.stage.run("X", ...);
    # the paths it passes are the run's (or, for a package with two stages, that stage's function's) arguments.
    import importlib
    import inspect

    script = importlib.import_module(f"stages.{name}")
    real = script.run
    assert real.__module__.startswith("selfme.") and real.__module__.endswith(".stage") and real.__name__ == "run"
    calls = []
    monkeypatch.setattr(script, "run", lambda *a, **kw: calls.append((a, kw)) or 0)
    monkeypatch.setattr(script, "load_params", lambda *a, **kw: {})
    monkeypatch.setattr(script, "setup_logging", lambda: None)
    assert script.main(["--dataset", "toy"] if "--dataset" in inspect.getsource(script.main) else []) == 0
    (args, kwargs), = calls
    assert args == (name,)
    inspect.signature(real).bind(*args, **kwargs)
    target = getattr(importlib.import_module(real.__module__), name, None)
    if callable(target) and target.__module__ == real.__module__:  # a package with several stages: run dispatches to the stage's own function
        inspect.signature(target).bind(**kwargs)
