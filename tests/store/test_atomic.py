"""Atomic writes: an interrupted write leaves nothing visible and the old version intact."""

from __future__ import annotations

import json

import pytest

from rlvr.store.atomic import atomic_dir, is_complete, sweep_debris, write_json


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


KILLED_WRITER = """
import os, sys
from rlvr.store.atomic import atomic_dir, atomic_file
root = sys.argv[1]
with atomic_file(root + "/tokens/pair=a/part-00000.parquet") as tmp:
    tmp.write_bytes(b"half a part")
    with atomic_dir(root + "/analysis") as d:
        (d / "agg.parquet").write_bytes(b"half a result")
        os.kill(os.getpid(), 9)  # kill -9: no finally clause runs
"""


def test_debris_of_a_killed_writer_is_swept(tmp_path):
    import subprocess
    import sys

    (tmp_path / "tokens" / "pair=a").mkdir(parents=True)
    done = tmp_path / "tokens" / "pair=a" / "part-00001.parquet"
    done.write_bytes(b"whole")
    other = tmp_path / ".other.tmp-0123abcd"  # another output's debris: not this stage's
    other.mkdir()
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], timeout=120)
    assert proc.returncode == -9
    debris = sorted(p.name for p in tmp_path.rglob(".*"))
    assert [n.split(".tmp-")[0] for n in debris] == [".analysis", ".other", ".part-00000.parquet"]
    removed = sweep_debris(tmp_path / "tokens") + sweep_debris(tmp_path / "analysis")
    assert sorted(p.name.split(".tmp-")[0] for p in removed) == [".analysis",
                                                                  ".part-00000.parquet"]
    assert sorted(p.name for p in tmp_path.rglob(".*")) == [other.name]
    assert done.read_bytes() == b"whole" and not (tmp_path / "analysis").exists()
    assert sweep_debris(tmp_path / "tokens") == []  # nothing left: a second sweep is a no-op
