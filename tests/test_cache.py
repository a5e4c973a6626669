"""The keyed cache (selfme.cache): keys from params, input digests and the code digest; records trusted
only when they parse and hold the key. A code edit redoes exactly the items whose code it touches."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfme import cache
from selfme.cache import code_digest, code_files, item_key, read_record, write_record
from selfme.imports import PROJECT_ROOT

SCORES = PROJECT_ROOT / "selfme" / "metrics" / "scores.py"


def _package(root: Path) -> Path:
    """A tiny project: ``pkg.compute`` imports a copy of the LOSO scoring code (lazily) and a helper
    (relatively); ``pkg.other`` is imported by nothing."""
    pkg = root / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(SCORES, pkg / "scores.py")
    (pkg / "util.py").write_text("SCALE = 2\n")
    (pkg / "other.py").write_text("UNRELATED = 1\n")
    (pkg / "compute.py").write_text("from . import util\n\n\ndef item(x):\n    from pkg.scores import uf1_uar\n"
                                    "    return x * util.SCALE\n")
    return pkg


class Item:
    """An item computed through the cache: its record is reused while the key holds."""

    def __init__(self, root: Path, record: Path) -> None:
        self.root, self.record, self.computed = root, record, 0

    def get(self, params: dict, source: Path) -> dict:
        key = item_key(params=params, inputs={"source": cache.file_sha256(source)},
                       code=code_digest("pkg.compute", root=self.root, packages=("pkg",)))
        stored = read_record(self.record, key)
        if stored is None:
            self.computed += 1
            stored = write_record(self.record, {"value": int(source.read_text()) * params["scale"]}, key=key)
        return stored


def test_the_closure_follows_lazy_and_relative_imports_only(tmp_path):
    pkg = _package(tmp_path)
    files = {p.name for p in code_files(["pkg.compute"], root=tmp_path, packages=("pkg",))}
    assert files == {"__init__.py", "compute.py", "util.py", "scores.py"}
    assert (pkg / "other.py").is_file()


def test_a_code_edit_redoes_the_item_and_an_unrelated_edit_does_not(tmp_path):
    pkg = _package(tmp_path)
    source = tmp_path / "input.txt"
    source.write_text("21")
    item = Item(tmp_path, tmp_path / "out" / "item.json")
    first = item.get({"scale": 2}, source)
    assert first["value"] == 42 and item.computed == 1
    assert item.get({"scale": 2}, source) == first and item.computed == 1    # up to date: reused
    (pkg / "other.py").write_text("UNRELATED = 2\n")                         # code nobody imports
    assert item.get({"scale": 2}, source) == first and item.computed == 1
    with open(pkg / "scores.py", "a", encoding="utf-8") as fh:               # edit the copied scoring code
        fh.write("\nPOOLING = 'per fold'\n")
    again = item.get({"scale": 2}, source)
    assert item.computed == 2 and again["key"] != first["key"] and again["value"] == 42
    assert item.get({"scale": 3}, source)["value"] == 63 and item.computed == 3  # params change
    source.write_text("10")
    assert item.get({"scale": 3}, source)["value"] == 30 and item.computed == 4  # input change


@pytest.mark.parametrize("damage", ["", '{"value": 1, "key": "', "[1, 2]", "\x00\xff garbage", "null"])
def test_a_half_written_or_corrupted_record_is_never_trusted(tmp_path, damage):
    _package(tmp_path)
    source = tmp_path / "input.txt"
    source.write_text("5")
    item = Item(tmp_path, tmp_path / "item.json")
    good = item.get({"scale": 2}, source)
    item.record.write_bytes(damage.encode("latin-1"))
    assert item.get({"scale": 2}, source) == good and item.computed == 2
    forged = {**good, "value": 999, "key": "0" * 64}  # a record of another key
    item.record.write_text(json.dumps(forged))
    assert item.get({"scale": 2}, source) == good and item.computed == 3


def test_keys_are_canonical_and_stable_across_processes(tmp_path):
    _package(tmp_path)
    params = {"b": [1, 2.5, None], "a": {"y": True, "x": "s"}}
    key = item_key(params=params, inputs={"f": "abc"}, code=code_digest("pkg.compute", root=tmp_path,
                                                                          packages=("pkg",)))
    reordered = {"a": {"x": "s", "y": True}, "b": [1, 2.5, None]}
    assert key == item_key(params=reordered, inputs={"f": "abc"},
                           code=code_digest("pkg.compute", root=tmp_path, packages=("pkg",)))
    # hand-worked: SHA-256 of the sorted, whitespace-free JSON of the payload
    code = code_digest("pkg.compute", root=tmp_path, packages=("pkg",))
    text = ('{"code":"%s","format":"selfme-key/1","inputs":{"f":"abc"},'
            '"params":{"a":{"x":"s","y":true},"b":[1,2.5,null]}}' % code)
    assert key == hashlib.sha256(text.encode()).hexdigest()
    script = ("import sys; from pathlib import Path; from selfme.cache import item_key, code_digest; "
              "print(item_key(params={'a': {'x': 's', 'y': True}, 'b': [1, 2.5, None]}, inputs={'f': 'abc'}, "
              "code=code_digest('pkg.compute', root=Path(sys.argv[1]), packages=('pkg',))))")
    other = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                           check=True, cwd=PROJECT_ROOT).stdout.strip()
    assert other == key


def test_the_code_digest_is_the_files_content_not_their_place_or_time(tmp_path):
    _package(tmp_path / "a")
    _package(tmp_path / "b")
    digest = code_digest("pkg.compute", root=tmp_path / "a", packages=("pkg",))
    assert digest == code_digest("pkg.compute", root=tmp_path / "b", packages=("pkg",))
    (tmp_path / "b" / "pkg" / "util.py").touch()
    assert digest == code_digest("pkg.compute", root=tmp_path / "b", packages=("pkg",))


def test_a_payload_that_is_not_json_data_is_refused():
    with pytest.raises(TypeError, match="object is not JSON data"):
        cache.payload_key({"model": object()})
    assert cache.payload_key({"p": Path("a/b")}) == cache.payload_key({"p": "a/b"})


def test_an_unknown_module_names_itself(tmp_path):
    with pytest.raises(ValueError, match="'pkg.missing'"):
        code_digest("pkg.missing", root=tmp_path, packages=("pkg",))


@pytest.mark.parametrize("module,has,lacks", [
    ("selfme.scvit.loso", ["selfme/scvit/train.py", "selfme/scvit/stacked.py", "selfme/scvit/stacked_adam.py",
                           "selfme/metrics/scores.py"],
     ["selfme/face/crop.py", "selfme/motion/train.py", "selfme/extract/dataset.py"]),
    ("selfme.face.crop", ["selfme/face/clip.py", "selfme/face/align.py", "selfme/io.py"],
     ["selfme/scvit/loso.py", "selfme/motion/model.py", "selfme/metrics/scores.py"]),
    ("selfme.extract.dataset", ["selfme/extract/engine.py", "selfme/motion/model.py", "selfme/bspline.py",
                                "selfme/flow/classic.py"], ["selfme/scvit/loso.py", "selfme/face/crop.py"]),
    ("selfme.motion.pipeline", ["selfme/motion/train.py", "selfme/motion/model.py", "selfme/motion/losses.py"],
     ["selfme/scvit/loso.py", "selfme/face/crop.py", "selfme/extract/dataset.py"]),
])
def test_each_item_kind_is_keyed_by_its_own_code(module, has, lacks):
    files = {p.relative_to(PROJECT_ROOT).as_posix() for p in code_files([module])}
    assert set(has) <= files and not set(lacks) & files


def test_editing_a_copy_of_the_loso_scoring_code_changes_the_fold_code_digest(tmp_path):
    copy = tmp_path / "selfme"
    shutil.copytree(PROJECT_ROOT / "selfme", copy, ignore=shutil.ignore_patterns("__pycache__"))
    loso, crop = code_digest("selfme.scvit.loso", root=tmp_path), code_digest("selfme.face.crop", root=tmp_path)
    assert loso == code_digest("selfme.scvit.loso")  # a copy of the same files: the same digest
    with open(copy / "metrics" / "scores.py", "a", encoding="utf-8") as fh:
        fh.write("\n# edited\n")
    assert code_digest("selfme.scvit.loso", root=tmp_path) != loso
    assert code_digest("selfme.face.crop", root=tmp_path) == crop


def test_loso_folds_rerun_after_an_edit_of_a_copy_of_their_scoring_code_only(tmp_path, monkeypatch):
    from loso_testing import motion_index, run

    from selfme.scvit import folds, load_samples

    copy = tmp_path / "code"
    shutil.copytree(PROJECT_ROOT / "selfme", copy / "selfme", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(folds, "code_digest", lambda module: code_digest(module, root=copy))
    samples = load_samples(motion_index(tmp_path, subjects=("s1", "s2"), clips=2))
    out = tmp_path / "results"
    loso = {"epochs": 1}
    assert len(run(samples, out, loso=loso).ran) == 2
    with open(copy / "selfme" / "face" / "crop.py", "a", encoding="utf-8") as fh:  # not LOSO's code
        fh.write("\n# edited\n")
    assert run(samples, out, loso=loso).ran == ()
    with open(copy / "selfme" / "metrics" / "scores.py", "a", encoding="utf-8") as fh:
        fh.write("\n# edited\n")
    assert len(run(samples, out, loso=loso).ran) == 2


def test_a_truncated_or_non_finite_motion_checkpoint_is_not_resumed(tmp_path, caplog):
    import torch

    from selfme.motion.checkpoint import CHECKPOINT_NAME, params_hash, read_checkpoint, write_checkpoint

    run_hash = params_hash({"lr": 1})
    networks = {"generator": {"w": torch.ones(3)}, "kp_detector": {"b": torch.zeros(2)}}
    write_checkpoint(tmp_path, {"params_hash": run_hash, "epoch": 1, "networks": networks})
    assert read_checkpoint(tmp_path, run_hash)["epoch"] == 1
    assert read_checkpoint(tmp_path, params_hash({"lr": 2})) is None          # another run's key
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(path.read_bytes()[:100])                                  # truncated
    assert read_checkpoint(tmp_path, run_hash) is None and str(path) in caplog.text
    networks["generator"]["w"][1] = float("nan")                               # corrupted weights
    write_checkpoint(tmp_path, {"params_hash": run_hash, "epoch": 1, "networks": networks})
    assert read_checkpoint(tmp_path, run_hash) is None and "generator.w" in caplog.text
