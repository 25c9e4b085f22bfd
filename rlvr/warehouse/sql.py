"""The `sql/` loader: read a query file by name and run it with DuckDB named `$parameters`.

Query files live in one folder per stage that runs them (`sql/analyze/`, `sql/cross_sample/`,
`sql/decisive/`), and the staging models the warehouse creates for them in `sql/staging/`
(`rlvr.warehouse.staging`); names are unique across folders, so a query is loaded by its
name alone.

SQL files hold plain DuckDB with no paths (the warehouse binds table names to parquet in
Python). Parameters are passed as a dict; only the ones a query mentions are sent, because
DuckDB rejects a prepared statement given parameters it does not use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

# a `$name` in query text; `--` comments are dropped first (they may mention parameters), and
# the SQL files keep `$` out of string literals
_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_COMMENT_RE = re.compile(r"--[^\n]*")


def _query_files(sql_dir: str | Path) -> dict[str, Path]:
    """Every query file under `sql_dir` (one folder per stage that runs it), by name."""
    files: dict[str, Path] = {}
    for path in sorted(Path(sql_dir).rglob("*.sql")):
        assert path.stem not in files, f"two SQL files named {path.stem}: {path}"
        files[path.stem] = path
    return files


def list_queries(prefix: str = "", sql_dir: str | Path = SQL_DIR, stage: str = "") -> list[str]:
    """Names (file stems) of the queries starting with `prefix` (of `sql_dir/<stage>/`), sorted."""
    root = Path(sql_dir) / stage
    return sorted(n for n, p in _query_files(sql_dir).items()
                  if n.startswith(prefix) and p.is_relative_to(root))


def load_sql(name: str, sql_dir: str | Path = SQL_DIR) -> str:
    """The text of the query file `<name>.sql` anywhere under `sql_dir`."""
    path = _query_files(sql_dir).get(name)
    if path is None:
        known = ", ".join(list_queries(sql_dir=sql_dir)) or "none"
        raise ValueError(f"no SQL file {name}.sql under {sql_dir}; known queries: {known}")
    return path.read_text()


def query_params(text: str) -> set[str]:
    """Names of the `$parameters` a query text uses."""
    return set(_PARAM_RE.findall(_COMMENT_RE.sub("", text)))


def bind_params(text: str, params: dict[str, Any], where: str = "query") -> dict[str, Any]:
    """The subset of `params` that `text` uses; ValueError naming any it needs but lacks."""
    needed = query_params(text)
    missing = sorted(needed - set(params))
    if missing:
        raise ValueError(f"{where} needs parameter(s) {missing}; pass them in the params dict "
                         "(the `analyze` section of params.yaml for the pipeline)")
    return {k: params[k] for k in sorted(needed)}


def run_sql(
    con: duckdb.DuckDBPyConnection,
    name: str,
    params: dict[str, Any] | None = None,
    sql_dir: str | Path = SQL_DIR,
) -> pa.Table:
    """Run query `name` on `con` with `params` (extra keys are ignored) and return its result."""
    text = load_sql(name, sql_dir)
    bound = bind_params(text, params or {}, where=f"{name}.sql")
    return con.sql(text, params=bound or None).to_arrow_table()
