"""`selfme crop` and `selfme extract` apply their section's `threads` as the crop and extract stages do, so
the command line and the stage compute with the same torch thread count (results depend on it)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

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


_BLAS_THREADS = ("from threadpoolctl import threadpool_info; "
                 "print(sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}))")


def test_stage_guard_pins_blas_threads_whatever_the_environment(tmp_path):
    """A stage's numpy / OpenCV BLAS pools run one thread under OMP_NUM_THREADS=2: the environment would
    otherwise pick how a threaded product splits its rows, and with it the float results."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "2"
    code = ("import cv2, numpy; from stages._params import guarded; "
            f"guarded(lambda: exec({_BLAS_THREADS!r}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[1]"
    unpinned = subprocess.run([sys.executable, "-c", f"import cv2, numpy; {_BLAS_THREADS}"], env=env,
                              capture_output=True, text=True, check=True)
    assert unpinned.stdout.strip() != "[1]" or os.cpu_count() == 1  # the environment did ask for two


def test_selfme_command_pins_blas_threads(monkeypatch):
    import selfme.cli as cli
    from threadpoolctl import threadpool_info, threadpool_limits

    seen: list[set[int]] = []

    def parser():
        p = argparse.ArgumentParser()
        p.add_argument("--log-level", default=None)
        p.set_defaults(command="probe", func=lambda args: seen.append(
            {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}))
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    with threadpool_limits(limits=2, user_api="blas"):  # restored after the test
        assert cli.main([]) == 0
    assert seen == [{1}]
