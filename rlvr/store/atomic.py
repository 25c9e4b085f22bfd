"""Atomic writes: a reader sees a whole file or directory, or none at all.

Files are written to a temporary sibling and renamed; directories are built in a temporary
sibling, get a `_COMPLETE` marker last, and are renamed into place. A directory without the
marker is an interrupted write and is redone, never read. A killed writer leaves its temporary
(`.<name>.tmp-<hex>`, or `.<name>.old-<hex>` mid-swap) behind: `sweep_debris`, called by the
stage that owns a path before it writes there, removes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

MARKER = "_COMPLETE"
# the temporary names atomic_dir and atomic_file use: `.<name>.tmp-<8 hex>`, `.<name>.old-<8 hex>`
_DEBRIS = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-[0-9a-f]{8}$")


def is_complete(path: str | Path) -> bool:
    """True when `path` is a directory whose atomic write finished."""
    return (Path(path) / MARKER).exists()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on success mark it complete and move it to `path`.

    An existing directory at `path` is replaced. On error the temporary directory is removed and
    `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        (tmp / MARKER).write_text("ok\n")
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to `path`; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_rows(rows: list[dict], path: str | Path) -> None:
    """A list of dicts as CSV (a DVC plot), atomically."""
    with atomic_file(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def write_json(obj: Any, path: str | Path) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def keep_only(directory: str | Path, names: set[str]) -> list[Path]:
    """Remove the files directly in `directory` that are not in `names` (e.g. gate results of
    models a previous run had): for outputs DVC keeps between runs (`persist`)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.is_file() and p.name not in names]
    for p in stale:
        p.unlink()
    return stale


def sweep_debris(*paths: str | Path) -> list[Path]:
    """Remove what killed atomic writes of `paths` left: their temporary siblings and every
    temporary below them. Returns what was removed.

    Only the stage that owns a path may call this, before it writes (a temporary of a write in
    progress looks the same as one of a killed write): stages sweep `Layout.outputs` once their
    inputs are checked.
    """
    found = []
    for path in map(Path, paths):
        siblings = path.parent.iterdir() if path.parent.is_dir() else []
        found += [p for p in siblings if (m := _DEBRIS.match(p.name)) and m["name"] == path.name]
        if path.is_dir():
            found += [p for p in path.rglob(".*") if _DEBRIS.match(p.name)]
    removed = []
    for p in sorted(found, key=lambda p: len(p.parts)):  # a directory before what it holds
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue  # inside a directory removed above
        removed.append(p)
    return removed
