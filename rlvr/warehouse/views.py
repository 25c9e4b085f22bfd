"""The DuckDB warehouse: stable view names over the pipeline's parquet tables.

Paths are bound here, in Python; SQL files only name the views (`tokens`, `samples`, ...), the
way dbt's `ref` works. There is one view per table of the registry (`rlvr.store.registry`:
location, completion rule, column meanings), made only once the table is complete, so a stage
that is still writing (or rewriting) a table never shows half of it.

`connect` opens the views read-only by construction: the parquet files are opened by pyarrow
(Arrow datasets registered in the connection), and the DuckDB connection itself has no file
system access at all (`enable_external_access = false`, no allowed paths, settings locked). So
no statement it accepts, whatever its form (COPY with any option, EXPLAIN ANALYZE of one,
EXPORT, ATTACH, a pragma, a table function), can create, change or delete a file; it only
spills to its private temporary directory.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from rlvr.layout import DATA_ROOT, Layout
from rlvr.store.registry import TABLES, complete_files
from rlvr.warehouse.sql import SQL_DIR
from rlvr.warehouse.staging import STAGING, STAGING_DOCS, add_staging, staging_sql

__all__ = ["COLUMNS", "complete_files", "connect", "describe", "missing_view", "row_counts",
           "setup_sql", "view_sql", "views"]

# what `rlvr describe` prints: the tables' columns (the registry's) and the staging models'
COLUMNS: dict[str, dict[str, str]] = {**{n: t.docs for n, t in TABLES.items()}, **STAGING_DOCS}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _where_roles(exclude_roles: Sequence[str]) -> str:
    if not exclude_roles:
        return ""
    return (" where role is null or role not in ("
            + ", ".join(_quote(r) for r in exclude_roles) + ")")


def view_sql(name: str, files: list[Path], exclude_roles: Sequence[str] = ()) -> str:
    """A CREATE VIEW statement reading `files` with DuckDB's own parquet reader (the one place
    paths meet SQL: `rlvr setup`, for the duckdb CLI or a notebook); rows whose `role` is in
    `exclude_roles` are left out (e.g. chat-template tokens)."""
    hive = any("=" in part for f in files for part in f.parts)
    listing = ", ".join(_quote(str(f.resolve())) for f in files)
    return (f"create or replace view {name} as select * from read_parquet([{listing}], "
            f"hive_partitioning = {str(hive).lower()}, union_by_name = true)"
            f"{_where_roles(exclude_roles)};")


def _available(data_dir: str | Path) -> dict[str, list[Path]]:
    """The complete parquet files of each table present under `data_dir`, by view name."""
    layout = Layout(data_dir)
    found = {name: complete_files(t.path(layout)) for name, t in TABLES.items()}
    return {name: files for name, files in found.items() if files}


def setup_sql(data_dir: str | Path = DATA_ROOT, sql_dir: str | Path = SQL_DIR) -> list[str]:
    """Statements that create every available view: run them in the duckdb CLI or a notebook."""
    available = _available(data_dir)
    con = connect(data_dir, sql_dir)  # the models these tables' columns allow (add_staging)
    made = add_staging(con, sql_dir)
    con.close()
    return [*(view_sql(name, files) for name, files in available.items()),
            *(s for name, s in staging_sql(available, sql_dir).items() if name in made)]


# DuckDB settings of every warehouse connection, fixed when it opens: no file system access
# (reads go through pyarrow), no extension, and the configuration locked so no statement can
# undo that. Spills still go to the connection's own temporary directory.
LOCKED = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}
SOURCE_PREFIX = "rlvr_source_"  # the registered Arrow datasets the views select from:
# rlvr_source_<table>_<i>, one per hive folder


def _hive_groups(root: Path, files: Sequence[Path]) -> dict[tuple[tuple[str, str], ...],
                                                            list[Path]]:
    """The files of a table by the `key=value` folders between `root` and them."""
    groups: dict[tuple[tuple[str, str], ...], list[Path]] = {}
    for f in files:
        keys = () if f == root else tuple(
            tuple(part.split("=", 1)) for part in f.relative_to(root).parts[:-1] if "=" in part)
        groups.setdefault(keys, []).append(f)
    return groups


def _arrow_schema(files: Sequence[Path], keys: set[str]) -> pa.Schema:
    """One schema for every file of a table, as DuckDB's `union_by_name` reads them (a column
    a file lacks reads as null), with its hive keys, and text as dictionaries."""
    schema = pa.unify_schemas([pq.read_schema(f).remove_metadata() for f in files])
    schema = pa.schema([*schema, *(pa.field(k, pa.string()) for k in sorted(keys)
                                   if k not in schema.names)])
    # text read as dictionaries, as DuckDB's own reader keeps it: a few distinct pair, role or
    # token strings per file then cost DuckDB a lookup, not a copy per row (3x on grouped text)
    return pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type))
                      if pa.types.is_string(f.type) else f for f in schema])


def _register_table(con: duckdb.DuckDBPyConnection, name: str, root: Path,
                    files: Sequence[Path]) -> str:
    """Register a table's files as Arrow datasets, one per hive folder, and return the SELECT
    that reads them as one relation: each folder's `key=value`s become constants, as
    `read_parquet(..., hive_partitioning = true)` makes them (DuckDB then groups by a constant,
    not by a column: 3x faster on `group by pair, generator`)."""
    groups = _hive_groups(root, files)
    schema = _arrow_schema(files, {k for keys in groups for k, _ in keys})
    text = [f.name for f in schema if pa.types.is_dictionary(f.type)]
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=text))
    selects = []
    for i, (keys, group) in enumerate(groups.items()):
        source = f"{SOURCE_PREFIX}{name}_{i}"
        con.register(source, ds.dataset([str(f) for f in group], schema=schema, format=fmt))
        constants = ", ".join(f"{_quote(v)} as {k}" for k, v in keys)
        selects.append(f"select * replace ({constants}) from {source}" if keys
                       else f"select * from {source}")
    return " union all ".join(selects)


def connect(
    data_dir: str | Path = DATA_ROOT, sql_dir: str | Path = SQL_DIR, threads: int | None = None,
    exclude_roles: Sequence[str] = (),
) -> duckdb.DuckDBPyConnection:
    """A read-only in-memory DuckDB connection with a view per available table under
    `data_dir`: the views read their parquet files through pyarrow, and the connection has no
    file access of its own (it can neither read nor write a file, load an extension or change
    a setting). `tokens` leaves out rows of `exclude_roles`."""
    available = _available(data_dir)
    # spills go to a private temporary directory, never to DuckDB's default `./.tmp`
    spill = Path(tempfile.gettempdir()) / f"rlvr-duckdb-{uuid.uuid4().hex[:8]}"
    con = duckdb.connect(config={"temp_directory": str(spill)})
    if threads is not None:
        con.sql(f"set threads = {int(threads)}")
    for key, value in LOCKED.items():  # in this order: the lock last
        con.sql(f"set {key} = {str(value).lower()}")
    for name, files in available.items():
        relation = _register_table(con, name, TABLES[name].path(Layout(data_dir)), files)
        where = _where_roles(exclude_roles if name == "tokens" else ())
        con.sql(f"create or replace view {name} as select * from ({relation}){where}")
    add_staging(con, sql_dir)
    return con


def missing_view(data_dir: str | Path, name: str) -> str | None:
    """Why table `name` has no view under `data_dir`, naming the stage to run; None when `name`
    is no table of the pipeline."""
    if name in STAGING:
        absent = [n for n in STAGING[name][0] if n not in _available(data_dir)]
        return missing_view(data_dir, absent[0]) if absent else None
    table = TABLES.get(name)
    return None if table is None else table.missing(Layout(data_dir))


def views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the views defined on `con`, sorted."""
    rows = con.sql("select view_name from duckdb_views() where not internal").fetchall()
    return sorted(r[0] for r in rows if not r[0].startswith(SOURCE_PREFIX))


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows in each view of `con`."""
    return {v: con.sql(f"select count(*) from {v}").fetchall()[0][0] for v in views(con)}


def describe(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str, str]]:
    """(column, type, description) for each column of `view`, plus documented ones missing."""
    docs = COLUMNS.get(view, {})
    rows = con.sql(f"describe {view}").fetchall()
    out = [(r[0], r[1], docs.get(r[0], docs.get("*", "(undocumented)"))) for r in rows]
    seen = {r[0] for r in rows}
    out += [(c, "(absent)", d) for c, d in docs.items() if c not in seen and c != "*"]
    return out
