"""Atomic writes: all or nothing, with the permissions an ordinary write would give."""

from __future__ import annotations

import os

import pytest

from selfme.io import atomic_dir, atomic_path, write_text


def test_atomic_file_has_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_failed_writes_leave_nothing(tmp_path):
    (tmp_path / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "keep.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert (tmp_path / "keep.txt").read_text() == "old"
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "clip") as tmp:
            (tmp / "img1.jpg").write_bytes(b"x")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_torch_files_are_byte_identical_whatever_the_temporary_name(tmp_path):
    import torch

    from selfme.io import write_torch

    obj = {"w": torch.arange(6.0).reshape(2, 3), "meta": {"epochs": [1, 2]}}
    write_torch(tmp_path / "a.pt", obj)
    write_torch(tmp_path / "b" / "model.pt", obj)  # another name, another folder: other temporary names
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], obj["w"])
    assert not [p for p in tmp_path.rglob("*.tmp")]
