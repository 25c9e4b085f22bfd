"""Atomic writes: an interrupted write leaves nothing visible and the old version intact."""

from __future__ import annotations

import json

import pytest

from rlvr.store.atomic import atomic_dir, is_complete, write_json


def test_dir_write_is_marked_and_replaces(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as d:
        (d / "a.txt").write_text("1")
    assert is_complete(target) and (target / "a.txt").read_text() == "1"
    with atomic_dir(target) as d:
        (d / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["_COMPLETE", "b.txt"]


def test_interrupted_dir_write_leaves_old_version(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as d:
        (d / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as d:
        (d / "a.txt").write_text("half")
        raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp leftovers


def test_write_json(tmp_path):
    write_json({"b": 1, "a": [1, 2]}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1, 2], "b": 1}
