"""Parquet tables of the pipeline: explicit schemas, hive-partitioned, atomic part files.

Layout (each part file also holds its partition columns, so it is self-describing):

    data/samples/model=<model>/part-<shard>.parquet
    data/tokens/pair=<base>__<tuned>/generator=<base|tuned>/part-<shard>.parquet
    data/decisive/positions/model=<generator>/part-00000.parquet

Rows carry the model's kind (base/rl/sft/rft/checkpoint/user) and RL step (checkpoints only),
so analyses over checkpoints need no join. Schemas, column meanings and locations are the
registry's (`rlvr.store.registry`); other stages read a table through it or the warehouse.
A part file is written under a temporary name and renamed, so it is either whole or absent; it
records a fingerprint of its inputs and a hash of its own data bytes, so a rerun keeps the parts
that match both and redoes the rest (a part edited by hand no longer matches its hash).
A dataset directory gets the `_COMPLETE` marker last, once every part is in and gated.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rlvr.store.atomic import MARKER, atomic_file
from rlvr.store.registry import DECISIVENESS, SAMPLES, TOKENS

FINGERPRINT_KEY = b"rlvr.fingerprint"
CONTENT_KEY = b"rlvr.content"  # blake2b of the file's bytes before its footer

# the registry owns the schemas (rlvr.store.registry); these names are what writers import
SAMPLES_SCHEMA, TOKENS_SCHEMA = SAMPLES.schema, TOKENS.schema
DECISIVE_SCHEMA = DECISIVENESS.schema
KEYS = {t.name: list(t.keys) for t in (SAMPLES, TOKENS, DECISIVENESS)}


def pair_name(base: str, tuned: str) -> str:
    """The pair's partition name, e.g. `base__rl`."""
    return f"{base}__{tuned}"


def samples_dir(root: str | Path, model: str) -> Path:
    return Path(root) / f"model={model}"


def tokens_dir(root: str | Path, pair: str, generator: str) -> Path:
    return Path(root) / f"pair={pair}" / f"generator={generator}"


def part_path(directory: str | Path, shard: int) -> Path:
    return Path(directory) / f"part-{shard:05d}.parquet"


def part_fingerprint(path: str | Path) -> str:
    """The fingerprint a part file was written with ("" if none)."""
    return ((pq.read_schema(path).metadata or {}).get(FINGERPRINT_KEY) or b"").decode()


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes every byte written through it."""

    def __init__(self, raw: io.BufferedWriter) -> None:
        self.raw, self.digest = raw, hashlib.blake2b(digest_size=16)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.digest.update(b)
        return self.raw.write(b)


def data_digest(path: str | Path) -> str:
    """blake2b of a parquet file's bytes before its footer (the footer holds the digest)."""
    path = Path(path)
    with open(path, "rb") as f:
        f.seek(-8, io.SEEK_END)
        left = path.stat().st_size - 8 - int.from_bytes(f.read(4), "little")
        f.seek(0)
        digest = hashlib.blake2b(digest_size=16)
        while left > 0:
            chunk = f.read(min(left, 1 << 22))
            assert chunk, f"{path}: shorter than its footer says"
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def part_is_current(path: str | Path, key: str) -> bool:
    """True when `path` exists, was written from the same inputs (`key`), and its data bytes
    still match the content hash written with them."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        meta = pq.read_metadata(path).metadata or {}
    except pa.ArrowInvalid:  # not a parquet file any more (truncated, overwritten): redo it
        return False
    return (meta.get(FINGERPRINT_KEY) == key.encode()
            and meta.get(CONTENT_KEY) == data_digest(path).encode())


def write_part(
    batches: Iterable[pa.RecordBatch | pa.Table], path: str | Path, schema: pa.Schema, key: str
) -> int:
    """Stream batches into one parquet file atomically; returns the row count.

    Memory stays at one batch: rows go to a temporary file that is renamed onto `path` at the end.
    The footer records `key` and the hash of the bytes before it (`part_is_current` checks both).
    """
    schema = schema.with_metadata({FINGERPRINT_KEY: key.encode()})
    rows = 0
    with atomic_file(path) as tmp, open(tmp, "wb") as raw:
        sink = _HashingFile(raw)
        with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
            for batch in batches:
                table = (pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch)
                         else batch)
                writer.write_table(table.cast(schema))
                rows += table.num_rows
            # every row group is in the file by now; only the footer follows
            writer.add_key_value_metadata({CONTENT_KEY: sink.digest.hexdigest().encode()})
    return rows


def to_table(columns: dict[str, list], schema: pa.Schema) -> pa.Table:
    """Columns (name -> values) as a table of `schema`; a missing or extra column is an error."""
    names = set(schema.names)
    assert set(columns) == names, f"columns differ from schema: {sorted(set(columns) ^ names)}"
    return pa.table({n: pa.array(columns[n], type=schema.field(n).type) for n in schema.names},
                    schema=schema)


def mark_complete(directory: str | Path) -> None:
    """Write the dataset's completion marker, last."""
    (Path(directory) / MARKER).write_text("ok\n")


def clear_complete(directory: str | Path) -> None:
    """Withdraw the marker before a dataset is modified."""
    (Path(directory) / MARKER).unlink(missing_ok=True)


def finalize_dataset(root: str | Path, expected: Iterable[str | Path]) -> list[Path]:
    """Drop part files under `root` that this run did not produce, then mark `root` complete.

    A rerun with fewer shards or models would otherwise leave old rows next to the new ones.
    Returns the removed files.
    """
    root = Path(root)
    keep = {Path(p).resolve() for p in expected}
    stale = [p for p in root.rglob("part-*.parquet") if p.resolve() not in keep]
    for p in stale:
        p.unlink()
    for d in sorted((d for d in root.rglob("*") if d.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    mark_complete(root)
    return stale
