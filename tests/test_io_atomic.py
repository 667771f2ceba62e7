"""Atomic writes: complete content or the old file, never a partial one, never stray temp files."""

from __future__ import annotations

import json
import os

import pytest

from genbench.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_writes_and_replaces(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first")
    assert target.read_text() == "first"
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_permissions_follow_umask(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_json_round_trip_nan_as_null_and_numpy(tmp_path):
    import numpy as np
    import torch

    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": [1, 2.5], "b": None})
    assert json.loads(path.read_text()) == {"a": [1, 2.5], "b": None}
    atomic_write_json(path, {"nan": float("nan"), "inf": [float("-inf")], "np": np.float32(0.5),
                             "arr": np.arange(3), "t": torch.tensor([1.5]), 3: tmp_path})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"nan": None, "inf": [None], "np": 0.5, "arr": [0, 1, 2],
                                "t": [1.5], "3": str(tmp_path)}


def test_unserialisable_json_keeps_old_file(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_failure_during_replace_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.txt"
    path.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
