"""The one config base (selfme.config): strict keys and types, one-line errors naming the full key, exit 2."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from selfme.config import ParamsError, from_mapping
from selfme.datasets.config import PrepareConfig, load_datasets
from selfme.extract.config import ExtractConfig, MotionEvalConfig
from selfme.face.config import CropConfig
from selfme.metrics.config import AggregateConfig
from selfme.motion.config import MotionConfig, stage_config
from selfme.motion.train import TrainConfig
from selfme.scvit.factory import SCViTConfig
from selfme.scvit.train import LosoConfig
from selfme.synth.config import SynthConfig

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
PARAMS_FILES = [REPO / "params.yaml", *sorted((REPO / "configs").glob("*.yaml"))]


def load_section(params: dict, name: str):
    """Build section ``name`` of a params dict the way its stage does."""
    section = params[name]
    builders = {
        "synth": SynthConfig.from_mapping, "prepare": PrepareConfig.from_mapping, "datasets": load_datasets,
        "crop": CropConfig.from_mapping, "motion": MotionConfig.from_mapping, "scvit": SCViTConfig.from_mapping,
        "loso": LosoConfig.from_mapping, "motion_eval": MotionEvalConfig.from_mapping,
        "aggregate": AggregateConfig.from_mapping,
        "pretrain": lambda s: stage_config(s, prefix="pretrain"), "finetune": lambda s: stage_config(s, prefix="finetune"),
        "extract": lambda s: ExtractConfig.from_mapping(s, method=(params.get("motion") or {}).get("method")),
    }
    return builders[name](section)


def with_value(dotted: str, value):
    """A copy of params.yaml with ``dotted`` (section.key[.key...]) set to ``value``."""
    params = copy.deepcopy(PARAMS)
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    return params


@pytest.mark.parametrize("dotted, value, message", [
    ("prepare.apex_mising", "spot", "prepare.apex_mising: unknown key (did you mean 'apex_missing'?)"),
    ("datasets.synthme.annotation", "x.xlsx", "datasets.synthme.annotation: unknown key (did you mean 'annotations'?)"),
    ("scvit.omega", "abc", "scvit.omega: expected a number, got 'abc'"),
    ("loso.epochs", "ten", "loso.epochs: expected an integer, got 'ten'"),
    ("crop.size", "abc", "crop.size: expected an integer, got 'abc'"),
    ("extract.gamma", "abc", "extract.gamma: expected a number, got 'abc'"),
    ("scvit.omega", True, "scvit.omega: expected a number, got True"),
    ("loso.epochs", 2.5, "loso.epochs: expected an integer, got 2.5"),
    ("motion.kp_detector.pads", 3, "motion.kp_detector.pads: unknown key (did you mean 'pad'?)"),
    ("pretrain.loss.pixle", 1.0, "pretrain.loss.pixle: unknown key (did you mean 'pixel'?)"),
    ("pretrain.head_motion.rotate_deg", "a lot", "pretrain.head_motion.rotate_deg: expected a number, got 'a lot'"),
    ("finetune.betas", [0.5], "finetune.betas: expected a list of 2 values, got [0.5]"),
    ("crop.dlib.upsampel", 2, "crop.dlib.upsampel: unknown key (did you mean 'upsample'?)"),
    ("extract.dis.preset", "slow", "extract.dis.preset: expected one of 'ultrafast', 'fast', 'medium', got 'slow'"),
    ("extract.tvl1.warps", 2.5, "extract.tvl1.warps: expected an integer, got 2.5"),
    ("motion_eval.variants.tvl1.gama", 2, "motion_eval.variants.tvl1.gama: unknown key (did you mean 'gamma'?)"),
    ("loso.seeds", [0, "one"], "loso.seeds[1]: expected an integer, got 'one'"),
    ("synth.fps", False, "synth.fps: expected an integer, got False"),
    ("loso.class_weight", "balancd",
     "loso.class_weight: expected one of 'none', 'balanced', got 'balancd' (did you mean 'balanced'?)"),
    ("loso.protocol", "compsite",
     "loso.protocol: expected one of 'per_dataset', 'composite', got 'compsite' (did you mean 'composite'?)"),
    ("scvit.sc_form", "supcn", "scvit.sc_form: expected one of 'eq14', 'supcon', got 'supcn' (did you mean 'supcon'?)"),
    ("scvit.sc_features", 3, "scvit.sc_features: expected one of 'patch_embed', 'last_block', got 3"),
    ("crop.gray", "replicat", "crop.gray: expected one of 'keep', 'replicate', got 'replicat' (did you mean 'replicate'?)"),
    ("crop.backend", "dlb", "crop.backend: expected one of 'dlib', 'face_alignment', got 'dlb' (did you mean 'dlib'?)"),
    ("prepare.protocol", "megc", "prepare.protocol: expected one of 'megc3', 'casme2_5', got 'megc' (did you mean 'megc3'?)"),
    ("extract.source_frame", "apx",
     "extract.source_frame: expected one of 'onset', 'apex', got 'apx' (did you mean 'apex'?)"),
])
def test_a_bad_key_or_value_is_one_line_naming_the_full_key(dotted, value, message):
    with pytest.raises(ParamsError) as info:
        load_section(with_value(dotted, value), dotted.split(".")[0])
    assert str(info.value) == message
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_a_class_check_names_its_key_too():
    with pytest.raises(ParamsError, match=r"^prepare\.apex_missing: expected one of 'spot', 'midpoint', 'drop', got 'guess'$"):
        load_section(with_value("prepare.apex_missing", "guess"), "prepare")
    with pytest.raises(ParamsError, match=r"^pretrain\.source: expected one of"):
        load_section(with_value("pretrain.source", "youtube"), "pretrain")
    with pytest.raises(ParamsError, match=r"^loso\.epochs must be >= 1, got 0$"):
        load_section(with_value("loso.epochs", 0), "loso")
    with pytest.raises(ParamsError, match=r"^pretrain\.pairs_per_epoch must be >= batch_size 8, got 2$"):
        load_section(with_value("pretrain.pairs_per_epoch", 2), "pretrain")
    with pytest.raises(ParamsError, match=r"^synth\.subjects must be >= 1$"):
        load_section(with_value("synth.subjects", 0), "synth")
    with pytest.raises(ParamsError, match=r"^finetune\.data: missing key"):
        stage_config({k: v for k, v in PARAMS["finetune"].items() if k != "data"}, prefix="finetune")


@dataclass(frozen=True, kw_only=True)
class _Inner:
    rate: float = 0.5


@dataclass(frozen=True, kw_only=True)
class _Toy:
    count: int
    scale: float = 1.0
    name: str | None = None
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = ()
    inner: _Inner = field(default_factory=_Inner)


def test_coercion_follows_the_annotations():
    toy = from_mapping(_Toy, {"count": 3, "scale": 2, "sizes": [1, 2], "inner": {"rate": "1e-4"}}, prefix="toy")
    assert toy == _Toy(count=3, scale=2.0, sizes=(1, 2), inner=_Inner(rate=1e-4))
    assert type(toy.scale) is float and type(toy.inner.rate) is float  # an int, a YAML 1.1 '1e-4', are numbers
    assert from_mapping(_Toy, {"count": "7", "name": None}, prefix="toy").count == 7
    bad = [({}, "toy.count: missing key"),
           ({"count": True}, "toy.count: expected an integer, got True"),
           ({"count": 1, "scale": "fast"}, "toy.scale: expected a number, got 'fast'"),
           ({"count": 1, "name": 5}, "toy.name: expected a string or null, got 5"),
           ({"count": 1, "mode": "c"}, "toy.mode: expected one of 'a', 'b', got 'c'"),
           ({"count": 1, "sizes": "12"}, "toy.sizes: expected a list, got '12'"),
           ({"count": 1, "inner": 3}, "toy.inner: expected a mapping, got 3"),
           ({"count": 1, "inner": {"rat": 1}}, "toy.inner.rat: unknown key (did you mean 'rate'?)")]
    for values, message in bad:
        with pytest.raises(ParamsError) as info:
            from_mapping(_Toy, values, prefix="toy")
        assert str(info.value) == message


@pytest.mark.parametrize("path", PARAMS_FILES, ids=lambda p: p.name)
def test_every_params_file_loads(path):
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for name in params:
        load_section(params, name)


def test_every_torch_stage_has_a_fixed_thread_count():
    # A fixed count (never 0, "one per core"): results depend on it. The motion learner trains on the
    # demo's two cores; the other stages run one thread per process (LOSO: one per fold worker).
    expected = {"crop": 1, "pretrain": 2, "finetune": 2, "extract": 1, "motion_eval": 1, "loso": 1}
    assert {name: PARAMS[name]["threads"] for name in expected} == expected
    defaults = [CropConfig(), ExtractConfig(), MotionEvalConfig(), LosoConfig(),
                TrainConfig(epochs=1, lr=1.0, batch_size=1)]
    assert [d.threads for d in defaults] == [1] * 5
    assert stage_config(PARAMS["pretrain"], prefix="pretrain")[1].threads == 2


def test_a_stage_on_a_bad_params_file_exits_2_with_one_line(tmp_path):
    params = with_value("prepare.apex_mising", "spot")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "stages.prepare", "--dataset", "synthme"], cwd=tmp_path,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("prepare")
    assert lines[0].endswith(": error: prepare.apex_mising: unknown key (did you mean 'apex_missing'?)")
    assert "Traceback" not in run.stderr + run.stdout


def test_the_command_exits_2_with_one_line(tmp_path, capsys):
    from selfme.cli import main

    bad = tmp_path / "synth.yaml"
    bad.write_text("synth:\n  subjects: eight\n", encoding="utf-8")
    assert main(["synth", "--config", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["selfme synth: error: synth.subjects: expected an integer, got 'eight'"]


def test_a_section_built_in_code_checks_its_literal_fields_as_params_do():
    from selfme.extract.config import ExtractConfig
    from selfme.scvit.train import LosoConfig

    with pytest.raises(ParamsError) as info:
        LosoConfig(class_weight="balancd")
    assert str(info.value) == "loso.class_weight: expected one of 'none', 'balanced', got 'balancd' (did you mean 'balanced'?)"
    with pytest.raises(ParamsError, match=r"^motion\.method: expected one of 'selfme', 'tvl1', 'farneback', 'dis', "
                                          r"got 'tvl' \(did you mean 'tvl1'\?\)$"):
        ExtractConfig.from_mapping({}, method="tvl")
    assert LosoConfig(class_weight="balanced", amp="bf16").amp == "bf16"
