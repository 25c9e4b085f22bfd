"""The warehouse cannot write: every write form DuckDB has, tried through `rlvr sql` and through
the connection `rlvr shell` hands out (`con`), leaves every file under data/ (and next to it)
byte-identical, by md5. The guarantee is the connection's, not a list of statements: DuckDB
there has no file system access (the views read their files through pyarrow), so the forms
below are samples of what it refuses, not the list it is checked against."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

from rlvr.cli import main
from rlvr.warehouse.views import connect

PART = "{data}/tokens/pair=base__rl/generator=base/part-00000.parquet"
NEW = "{data}/tokens/pair=base__rl/generator=base/part-99999.parquet"
TARGETS = [PART, NEW, "{data}/tokens", "{out}/elsewhere.parquet"]
# every option COPY ... TO takes that changes how or where it writes
COPY_OPTIONS = [
    "", "(format parquet)", "(format parquet, use_tmp_file false)",
    "(format parquet, use_tmp_file true)", "(format parquet, overwrite true)",
    "(format parquet, overwrite_or_ignore true)", "(format parquet, append true)",
    "(format parquet, partition_by (pair), overwrite_or_ignore true)",
    "(format parquet, per_thread_output true, overwrite true)",
    "(format parquet, file_size_bytes 1000, overwrite true)",
    "(format parquet, filename_pattern 'part-{{i}}', partition_by (generator), append true)",
    "(format parquet, compression uncompressed, row_group_size 10)",
    "(format csv)", "(format csv, header false, delimiter '|', use_tmp_file false)",
    "(format json)", "(format json, array true)",
]
COPIES = [f"copy {source} to '{target}' {options}"
          for source in ("tokens", "(select * from tokens limit 0)")
          for target in TARGETS for options in COPY_OPTIONS]
OTHERS = [
    # whole-database writes
    "export database '{data}/dump'", "export database '{data}/dump' (format parquet)",
    "export database '{out}/dump' (format csv)",
    "attach '{data}/evil.db' as evil", "attach '{data}/evil.db' as evil; create table "
    "evil.t as select * from tokens", f"attach '{PART}' as p",
    "attach ':memory:' as m; copy from database memory to m",
    "attach '{data}/s.sqlite' (type sqlite)",
    # tables, in memory: harmless, but tried
    "create table t as select * from tokens", "create or replace view tokens as select 1 as x",
    "create table t as select 1 as x; copy t to '{data}/t.parquet'",
    "insert into tokens select * from tokens", "drop view tokens",
    "checkpoint", "force checkpoint", "vacuum", "call checkpoint()",
    # settings and pragmas that write files or would reopen access
    "pragma enable_profiling = 'json'", "pragma profiling_output = '{data}/profile.json'",
    "set profiling_output = '{data}/profile.json'", "set enable_profiling = 'json'; "
    "set profiling_output = '{data}/p.json'; select count(*) from tokens",
    "set log_query_path = '{data}/queries.log'", "set temp_directory = '{data}/tokens'",
    "set enable_external_access = true", "set allowed_paths = ['{data}']",
    "set allowed_directories = ['{data}']", "reset lock_configuration",
    "set lock_configuration = false", "pragma memory_limit = '1MB'",
    "set preserve_insertion_order = false",
    # table functions and calls that write, log or read other files
    "call enable_logging(storage = 'file', storage_path = '{data}/log')",
    "call enable_logging('QueryLog', storage = 'file', storage_config = {{'path': '{data}/l'}})",
    f"select * from read_parquet('{PART}')", "select * from glob('{data}/*')",
    "select * from read_text('{data}/tokens/_COMPLETE')",
    "select * from read_blob('{data}/tokens/_COMPLETE')",
    "call pragma_storage_info('tokens')",
    # extensions and secrets (files under ~/.duckdb)
    "install httpfs", "force install httpfs", "load httpfs", "install '{data}/x.duckdb_extension'",
    "create persistent secret s (type s3, key_id 'a', secret 'b')",
    "create secret s (type s3, key_id 'a', secret 'b')",
]
STATEMENTS = [*COPIES, *OTHERS]
STATEMENTS += [f"explain analyze {s}" for s in STATEMENTS if ";" not in s]
STATEMENTS += [f"explain {s}" for s in COPIES[:4] + OTHERS[:4]]


@pytest.fixture(scope="module")
def root(scored_data, tmp_path_factory) -> Path:
    """A private copy of the scored tables (data/) and a folder next to it (out/)."""
    root = tmp_path_factory.mktemp("readonly")
    shutil.copytree(scored_data, root / "data")
    (root / "out").mkdir()
    return root


def md5s(root: Path) -> dict[str, str]:
    """md5 of every file under `root`, by relative path (a new or removed file shows too)."""
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _fill(statement: str, root: Path) -> str:
    return statement.format(data=root / "data", out=root / "out")


def test_no_statement_rlvr_sql_accepts_changes_a_byte(root, capsys):
    changed, noisy = [], []
    for statement in STATEMENTS:
        before = md5s(root)
        code = main(["--data", str(root / "data"), "sql", _fill(statement, root)])
        err = capsys.readouterr().err
        if md5s(root) != before:
            changed.append(statement)
        if code not in (0, 1) or (code and not err.startswith("error: ")) or "Traceback" in err:
            noisy.append((statement, code, err))
    assert changed == [] and noisy == []
    assert len(STATEMENTS) > 300


def test_no_statement_the_shell_connection_accepts_changes_a_byte(root):
    """`con` in `rlvr shell` is `connect(data)`: DuckDB refuses, or does it in memory."""
    changed = []
    for statement in STATEMENTS:
        before = md5s(root)
        con = connect(root / "data")
        try:
            rel = con.sql(_fill(statement, root))
            if rel is not None:
                rel.fetchall()
        except duckdb.Error:
            pass
        if md5s(root) != before:
            changed.append(statement)
    assert changed == []
    fresh = connect(root / "data")  # and the tables still read as before
    assert fresh.sql("select count(*) from tokens").fetchall()[0][0] > 150


@pytest.mark.parametrize("method", ["to_parquet", "to_csv", "write_csv", "write_parquet"])
def test_the_python_api_of_the_connection_writes_nothing_either(method, root):
    before = md5s(root)
    con = connect(root / "data")
    for target in (PART, NEW, "{out}/x"):
        with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
            getattr(con.sql("select * from tokens"), method)(_fill(target, root))
    assert md5s(root) == before


def test_explain_analyze_copy_over_a_part_is_refused_with_one_line(root, capsys):
    """issue 21's statement: it emptied a part of a complete table, exit status 0."""
    code = main(["--data", str(root / "data"), "sql", _fill(
        f"explain analyze copy (select * from tokens limit 0) to '{PART}' (format parquet, "
        "use_tmp_file false)", root)])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and len(err) == 2
    assert err[0].startswith("error: Permission Error: Cannot access file") and \
        err[0].endswith("file system operations are disabled by configuration")
    assert err[1] == ("hint: the warehouse is read-only: save a result with "
                      "--format csv|json|parquet --output FILE")
