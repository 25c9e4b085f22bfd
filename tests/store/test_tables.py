"""Parquet storage: explicit schemas, atomic part files, fingerprints, stale-part cleanup."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlvr.store.atomic import MARKER
from rlvr.store.registry import TOKENS
from rlvr.store.tables import (
    TOKENS_SCHEMA,
    finalize_dataset,
    part_is_current,
    part_path,
    tokens_dir,
    write_part,
)

SCHEMA = pa.schema([pa.field("k", pa.int32(), nullable=False), pa.field("v", pa.float32())])


def _batches(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise RuntimeError("interrupted")
        yield pa.table({"k": [i], "v": [i / 2]})


def test_part_file_is_whole_or_absent(tmp_path) -> None:
    path = part_path(tmp_path, 0)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_part(_batches(5, fail_at=3), path, SCHEMA, "key")
    assert list(tmp_path.iterdir()) == []  # neither the part nor a temporary file
    assert write_part(_batches(5), path, SCHEMA, "key") == 5
    table = pq.read_table(path)
    assert table.schema.field("k").type == pa.int32() and table.num_rows == 5


def test_fingerprint_decides_reuse(tmp_path) -> None:
    path = part_path(tmp_path, 1)
    assert not part_is_current(path, "a")
    write_part(_batches(2), path, SCHEMA, "a")
    assert part_is_current(path, "a") and not part_is_current(path, "b")


def test_finalize_removes_stale_parts_and_marks_last(tmp_path) -> None:
    keep = [part_path(tokens_dir(tmp_path, "base__rl", g), 0) for g in ("base", "tuned")]
    stale = [part_path(tokens_dir(tmp_path, "base__rl", "base"), 1),
             part_path(tokens_dir(tmp_path, "base__old", "base"), 0)]
    for p in keep + stale:
        write_part(_batches(2), p, SCHEMA, "k")
    removed = finalize_dataset(tmp_path, keep)
    assert sorted(removed) == sorted(stale)
    assert not (tmp_path / "pair=base__old").exists()
    assert (tmp_path / MARKER).exists()
    assert TOKENS.partition_files(tokens_dir(tmp_path, "base__rl", "base")) == keep[:1]


def test_schema_rejects_wrong_columns(tmp_path) -> None:
    with pytest.raises((pa.ArrowInvalid, KeyError, ValueError)):
        write_part([pa.table({"k": [1]})], part_path(tmp_path, 0), TOKENS_SCHEMA, "k")
    assert not part_path(tmp_path, 0).exists()


def test_a_part_edited_by_hand_is_not_current(tmp_path) -> None:
    """Edits that keep the fingerprint (metadata copied over) are caught by the content hash."""
    path = part_path(tmp_path, 2)
    write_part(_batches(3), path, SCHEMA, "a")
    original = path.read_bytes()
    table = pq.read_table(path)  # an edit as a user would make it: read, change, write back
    edited = table.set_column(1, "v", pa.array([9.0, 0.5, 1.0], pa.float32()))
    pq.write_table(edited.replace_schema_metadata(pq.read_metadata(path).metadata), path,
                   compression="zstd")
    assert pq.read_metadata(path).metadata[b"rlvr.fingerprint"] == b"a"  # kept its fingerprint
    assert not part_is_current(path, "a")
    path.write_bytes(original[:-40] + b"\0" * 40)  # a torn footer: unreadable, so not current
    assert not part_is_current(path, "a")
    path.write_bytes(original)
    assert part_is_current(path, "a")
