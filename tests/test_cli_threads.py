"""`selfme crop` and `selfme extract` apply their section's `threads` as the crop and extract stages do, so
the command line and the stage compute with the same torch thread count (results depend on it)."""

from __future__ import annotations

import argparse

import pytest
import torch
import yaml

import selfme.extract.cli as extract_cli
import selfme.extract.stage as extract_stage
import selfme.face.cli as face_cli
import selfme.face.stage as face_stage


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _parse(register, argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(argv)


def _recorder(seen, result):
    def fake(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return result
    return fake


def test_crop_command_uses_crop_threads_like_the_stage(tmp_path, monkeypatch):
    params = {"crop": {"threads": 3}, "datasets": {"toy": {"root": str(tmp_path / "raw")}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    seen: list[int] = []
    for module in (face_cli, face_stage):
        monkeypatch.setattr(module, "crop_dataset", _recorder(seen, {}))
        monkeypatch.setattr(module, "print_summary", lambda summary: None)
    args = _parse(face_cli.register, ["crop", "--manifest", "m.csv", "--out", str(tmp_path / "out"),
                                      "--params", str(tmp_path / "params.yaml")])
    assert args.func(args) == 0
    torch.set_num_threads(1)
    assert face_stage.run("crop", params=params, dataset="toy", manifest_dir=str(tmp_path)) == 0
    assert seen == [3, 3]


def test_extract_command_uses_extract_threads_like_the_stage(tmp_path, monkeypatch):
    motion = yaml.safe_load(open("params.yaml", encoding="utf-8"))["motion"]
    params = {"extract": {"threads": 2}, "motion": {**motion, "method": "tvl1"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    seen: list[int] = []
    for module in (extract_cli, extract_stage):
        monkeypatch.setattr(module, "extract_dataset", _recorder(seen, {}))
    args = _parse(extract_cli.register, ["extract", "--manifest", "m.csv", "--out", str(tmp_path / "out"),
                                         "--params", str(tmp_path / "params.yaml")])
    assert args.func(args) == 0
    torch.set_num_threads(1)
    assert extract_stage.extract(params=params, dataset="toy", faces_dir=str(tmp_path)) == 0
    assert seen == [2, 2]
