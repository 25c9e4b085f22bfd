"""The `rlvr` console script: ad-hoc, read-only SQL over the warehouse views.

    rlvr sql "select pair, avg(js) from tokens group by pair"     aligned table
    rlvr sql --format csv|json "..."                              machine-readable, to stdout
    rlvr sql --format parquet --output out.parquet "..."          a parquet file
    rlvr sql @agg_sparsity --param 'thresholds=[0.01, 0.1]'       a sql/ file by name
    rlvr tables                                                   views and row counts
    rlvr describe [VIEW]                                          columns, types, meanings
    rlvr setup                                                    CREATE VIEW statements for the
                                                                  duckdb CLI or a notebook
    rlvr shell                                                    Python prompt with `con` open
    rlvr init | pipeline | params                                 study workspaces (cli_study)
    rlvr audit [--rows N] [--pair P]                              token rows recomputed from
                                                                  the models in float64

Every command takes `--data DIR` (default `data/`). The views are read-only (see
`rlvr.warehouse.views.connect`: DuckDB has no file access, pyarrow reads the tables): no query
can change a file, and `--output` is the one way to write a result (atomically, never into the
pipeline's tables). csv, json and parquet
results stream a record batch at a time, whatever their size. A failing query prints one line
of DuckDB's message and a hint, and exits with status 1, without a traceback.
"""

from __future__ import annotations

import argparse
import code
import json
import re
import sys
from pathlib import Path
from typing import BinaryIO

import duckdb
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rlvr.cli_study import add_commands
from rlvr.layout import DATA_ROOT, Layout
from rlvr.store.atomic import atomic_file
from rlvr.store.registry import TABLES
from rlvr.warehouse.sql import bind_params, load_sql
from rlvr.warehouse.views import (
    COLUMNS,
    connect,
    describe,
    missing_view,
    row_counts,
    setup_sql,
    views,
)

BATCH_ROWS = 65536  # rows per streamed record batch
# statements that only read; anything else (COPY, ATTACH, INSTALL, SET, CREATE, ...) is refused
READ_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN,
                   duckdb.StatementType.PRAGMA, duckdb.StatementType.CALL}
NESTED = {"list", "struct", "map", "array", "union"}
ROW = "rlvr_result_row"  # alias of a result row turned into one JSON object


def _parse_param(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--param {text!r}: write it as NAME=VALUE (VALUE is JSON or a string)")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _query_text(query: str) -> str:
    return load_sql(query[1:]) if query.startswith("@") else query


def _check_read_only(con: duckdb.DuckDBPyConnection, text: str) -> None:
    """Refuse anything but one read statement, with a message that says what to do instead.
    This is for clarity, not safety: the connection itself cannot write a file whatever the
    statement (`rlvr.warehouse.views.connect`), EXPLAIN ANALYZE of a COPY included."""
    statements = con.extract_statements(text)
    if len(statements) != 1:
        raise ValueError(f"rlvr sql runs one query at a time; got {len(statements)} statements")
    if statements[0].type not in READ_STATEMENTS:
        verb = re.sub(r"--[^\n]*|/\*.*?\*/", "", statements[0].query, flags=re.S).split()[0]
        raise ValueError(f"the warehouse is read-only: rlvr sql runs queries (SELECT, EXPLAIN, "
                         f"PRAGMA, CALL), not {verb.upper()}; save a result with "
                         "--format csv|json|parquet --output FILE")


def _check_output(output: Path, data: Path) -> None:
    """An --output inside one of the pipeline's tables would become part of it: refuse it."""
    for table in TABLES.values():
        path = table.path(Layout(data))
        if output.resolve().is_relative_to(path.resolve()):
            raise ValueError(f"--output {output}: inside the table {path} that the "
                             f"{table.stage} stage writes; write the result outside the "
                             "pipeline's tables")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stream_result(rel: duckdb.DuckDBPyRelation, fmt: str, out: BinaryIO) -> None:
    """Write `rel` as csv, json (an array of records) or parquet into `out`, one record batch at
    a time, so memory stays at one batch whatever the result's size."""
    if fmt == "parquet":
        reader = rel.to_arrow_reader(BATCH_ROWS)
        with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
    elif fmt == "csv":
        # CSV has no lists or structs: those cells become their JSON text
        exprs = [f"to_json({_quoted(c)}) as {_quoted(c)}" if t.id in NESTED else _quoted(c)
                 for c, t in zip(rel.columns, rel.types, strict=True)]
        reader = rel.project(", ".join(exprs)).to_arrow_reader(BATCH_ROWS)
        with pacsv.CSVWriter(out, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
    else:
        reader = rel.set_alias(ROW).project(f"to_json({ROW})").to_arrow_reader(BATCH_ROWS)
        sep = b"["
        for batch in reader:
            rows = batch.column(0).to_pylist()
            if rows:
                out.write(sep + ",\n".join(rows).encode())
                sep = b",\n"
        out.write(b"[]\n" if sep == b"[" else b"]\n")


def _table_text(rel: duckdb.DuckDBPyRelation, max_rows: int) -> str:
    df = rel.limit(max_rows + 1).df()
    note = ""
    if len(df) > max_rows:
        df, note = df.head(max_rows), f", first {max_rows} shown: raise --max-rows"
    with pd.option_context("display.max_columns", None, "display.width", 200,
                           "display.max_colwidth", 60):
        return f"{df.to_string(index=False)}\n({len(df)} rows{note})\n"


def cmd_sql(args: argparse.Namespace, con: duckdb.DuckDBPyConnection) -> None:
    text = _query_text(args.query)
    _check_read_only(con, text)
    params = bind_params(text, dict(_parse_param(p) for p in args.param))
    if args.format == "parquet" and not args.output:
        raise ValueError("--format parquet needs --output FILE")
    if args.output:
        _check_output(Path(args.output), args.data)
    rel = con.sql(text, params=params or None)
    if rel is None:  # a statement with no result
        return
    if args.output:
        with atomic_file(args.output) as tmp, open(tmp, "wb") as out:
            if args.format == "table":
                out.write(_table_text(rel, args.max_rows).encode())
            else:
                stream_result(rel, args.format, out)
        print(f"wrote {args.output}", file=sys.stderr)
    elif args.format == "table":
        sys.stdout.write(_table_text(rel, args.max_rows))
    else:
        sys.stdout.flush()
        stream_result(rel, args.format, sys.stdout.buffer)
        sys.stdout.buffer.flush()


def cmd_tables(args: argparse.Namespace, con: duckdb.DuckDBPyConnection) -> None:
    counts = row_counts(con)
    if not counts:
        print(f"no tables under {args.data}/ yet (run `dvc repro` first)")
    for name, n in counts.items():
        print(f"{name:16s} {n:>12,d}")


def cmd_describe(args: argparse.Namespace, con: duckdb.DuckDBPyConnection) -> None:
    present = views(con)
    names = [args.view] if args.view else present
    for name in names:
        if name not in present:
            why = missing_view(args.data, name)
            raise ValueError(why or f"no view {name!r} over {args.data}/ (present: {present}; "
                             f"documented: {sorted(COLUMNS)})")
        print(f"{name}:")
        for column, dtype, doc in describe(con, name):
            print(f"  {column:28s} {dtype:10s} {doc}")


def cmd_setup(args: argparse.Namespace, con: duckdb.DuckDBPyConnection) -> None:
    print("\n".join(setup_sql(args.data)))


def cmd_shell(args: argparse.Namespace, con: duckdb.DuckDBPyConnection) -> None:
    banner = (f"Read-only DuckDB connection `con` with views {views(con)}.\n"
              "Try: con.sql('select pair, avg(js) from tokens group by pair').show()")
    code.interact(banner=banner, local={"con": con, "duckdb": duckdb})


def cmd_audit(args: argparse.Namespace, con: duckdb.DuckDBPyConnection) -> None:
    # torch and transformers load only for this command
    from transformers.utils.logging import disable_progress_bar

    from rlvr.models.specs import ModelsParams
    from rlvr.study import load_study
    from rlvr.tokens.audit import audit_table
    from rlvr.tokens.scorer import AuditParams

    disable_progress_bar()  # one line per partition, or the error
    params = Path(args.params)
    models = load_study(params).models if params.is_file() else ModelsParams()
    for line in audit_table(Layout(args.data), models, AuditParams(args.rows, args.seed),
                            args.pair):
        print(line)


def explain_error(err: duckdb.Error, data: Path) -> tuple[str, str]:
    """DuckDB's error as (one line, a hint): the first line of its message, and what to do."""
    text = str(err)
    first = text.splitlines()[0] if text else type(err).__name__
    missing = re.search(r"Table with name (\w+) does not exist", text)
    if missing:
        return missing_view(data, missing.group(1)) or first, "`rlvr tables` lists the views"
    if isinstance(err, duckdb.PermissionException):
        return first, ("the warehouse is read-only: save a result with "
                       "--format csv|json|parquet --output FILE")
    if "(BOOLEAN)" in first:
        return first, "cast a condition to average or sum it, e.g. avg((js > 0.1)::int)"
    if isinstance(err, duckdb.BinderException) and "not found" in first:
        return first, "`rlvr describe VIEW` lists each view's columns"
    return first, "see https://duckdb.org/docs/stable/sql/introduction for DuckDB's SQL"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlvr", description="Query the rlvr-lens warehouse.")
    parser.add_argument("--data", type=Path, default=Path(DATA_ROOT),
                        help="data directory holding the pipeline's tables (default: data)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sql", help="run a query (or @name for sql/<name>.sql)")
    p.add_argument("query")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    p.add_argument("--output", help="write to this file (required for parquet)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a $NAME parameter; VALUE is parsed as JSON when it can be")
    p.add_argument("--max-rows", type=int, default=1000, help="rows shown in table format")
    p.set_defaults(run=cmd_sql)
    sub.add_parser("tables", help="views and row counts").set_defaults(run=cmd_tables)
    p = sub.add_parser("describe", help="columns of a view (all views by default)")
    p.add_argument("view", nargs="?")
    p.set_defaults(run=cmd_describe)
    sub.add_parser("setup", help="print CREATE VIEW statements for the duckdb CLI or a notebook"
                   ).set_defaults(run=cmd_setup)
    sub.add_parser("shell", help="a Python prompt with the views open as `con`"
                   ).set_defaults(run=cmd_shell)
    p = sub.add_parser("audit", help="recompute token rows from the models in float64")
    p.add_argument("--rows", type=int, default=24, help="rows per (pair, generator)")
    p.add_argument("--seed", type=int, default=0, help="which rows")
    p.add_argument("--pair", action="append", default=[], help="only this pair (repeatable)")
    p.add_argument("--params", default="params.yaml",
                   help="its `models` section names the pairs' models (default: params.yaml)")
    p.set_defaults(run=cmd_audit)
    add_commands(sub)  # init, pipeline, params: workspaces, no warehouse
    parser.set_defaults(warehouse=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rlvr` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if not args.warehouse:
            args.run(args)
            return 0
        con = connect(args.data)
        args.run(args, con)
    except duckdb.Error as e:
        # a user's query error: one line of DuckDB's message and a hint, no traceback
        line, hint = explain_error(e, args.data)
        print(f"error: {line}\nhint: {hint}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
