"""Content hashes of inputs, for fingerprints that survive checkouts, pulls, copies and touches.

A part file records a fingerprint of everything it was computed from; a rerun keeps it when the
fingerprint matches. Fingerprints hold content hashes, never mtimes or absolute paths, so a
fresh clone plus `dvc pull`, or `touch` of every model file, keeps every finished shard.
Hashing a 7B checkpoint takes a while, so digests are cached per file by (size, mtime,
inode): a changed stamp only costs a rehash, never a wrong answer. `checked_once` caches the
verdict of a slow file check (a scan of a checkpoint's weights) the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from rlvr.store.atomic import atomic_file

CACHE_ENV = "RLVR_HASH_CACHE"  # a machine fact: where the digest cache lives
_LOCK = threading.Lock()
_CHUNK = 1 << 22


def _cache_path() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlvr-lens"
    return Path(os.environ.get(CACHE_ENV, default / "hashes.json"))


def _load_cache() -> dict[str, str]:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def file_hash(path: str | Path, cache: dict[str, str] | None = None) -> str:
    """sha256 of a file's bytes; `cache` maps a stat stamp to a digest already computed."""
    path = Path(path)
    stamp = _stamp(path)
    if cache is not None and stamp in cache:
        return cache[stamp]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    value = digest.hexdigest()
    if cache is not None:
        cache[stamp] = value
    return value


def content_hash(path: str | Path) -> str:
    """sha256 over a file, or over a directory's files (relative names and contents, sorted).

    A path that does not exist (e.g. a hub id) hashes its name: it has no local content.
    """
    path = Path(path)
    if not path.exists():
        return hashlib.sha256(f"missing:{path.as_posix()}".encode()).hexdigest()
    with _LOCK:
        cache = _load_cache()
        before = len(cache)
        if path.is_file():
            value = file_hash(path, cache)
        else:
            digest = hashlib.sha256()
            for p in sorted(q for q in path.rglob("*") if q.is_file()):
                rel = p.relative_to(path).as_posix()
                if "__pycache__" in rel or rel.startswith("."):
                    continue  # caches and hidden temp files are not content
                digest.update(f"{rel}\0{file_hash(p, cache)}\n".encode())
            value = digest.hexdigest()
        if len(cache) != before:
            _save_cache(cache)
    return value


def checked_once(path: str | Path, name: str, check: Callable[[Path], None]) -> None:
    """Run `check(path)` (which raises on a bad file) unless it passed on this very file before:
    the pass is cached under the file's stat stamp, so any rewrite checks again."""
    path = Path(path)
    key = f"{_stamp(path)}|{name}"  # the path stays first: _save_cache keeps live files' entries
    with _LOCK:
        if _load_cache().get(key) == "ok":
            return
    check(path)
    with _LOCK:
        cache = _load_cache()
        cache[key] = "ok"
        _save_cache(cache)


def _save_cache(cache: dict[str, str]) -> None:
    # entries of files that are gone (old checkpoints, temp copies) are dropped
    cache = {k: v for k, v in cache.items() if Path(k.split("|", 1)[0]).exists()}
    try:
        with atomic_file(_cache_path()) as tmp:
            tmp.write_text(json.dumps(cache))
    except OSError:
        pass  # a read-only home only costs rehashing next time


def fingerprint(**inputs: object) -> str:
    """A stable key of everything a part file depends on: sha256 of the inputs as JSON."""
    text = json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
