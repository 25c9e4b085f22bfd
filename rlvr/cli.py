"""The `rlvr` console script: ad-hoc SQL over the warehouse views.

    rlvr sql "select pair, avg(js) from tokens group by pair"     aligned table
    rlvr sql --format csv|json "..."                              machine-readable, to stdout
    rlvr sql --format parquet --output out.parquet "..."          a parquet file
    rlvr sql @agg_sparsity --param 'thresholds=[0.01, 0.1]'       a sql/ file by name
    rlvr tables                                                   views and row counts
    rlvr describe [VIEW]                                          columns, types, meanings
    rlvr setup                                                    CREATE VIEW statements for the
                                                                  duckdb CLI or a notebook
    rlvr shell                                                    Python prompt with `con` open

Every command takes `--data DIR` (default `data/`). A failing query prints DuckDB's message and
exits with status 1, without a traceback.
"""

from __future__ import annotations

import argparse
import code
import json
import sys
from pathlib import Path
from typing import TextIO

import duckdb
import pandas as pd

from rlvr.warehouse.sql import bind_params, load_sql
from rlvr.warehouse.views import COLUMNS, connect, describe, row_counts, setup_sql, views


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


def _write_frame(df: pd.DataFrame, fmt: str, out: TextIO, note: str = "") -> None:
    if fmt == "csv":
        df.to_csv(out, index=False)
    elif fmt == "json":
        out.write(df.to_json(orient="records", date_format="iso") + "\n")
    else:
        with pd.option_context("display.max_columns", None, "display.width", 200,
                               "display.max_colwidth", 60):
            print(df.to_string(index=False), file=out)
        print(f"({len(df)} rows{note})", file=out)


def cmd_sql(args: argparse.Namespace, con: duckdb.DuckDBPyConnection) -> None:
    text = _query_text(args.query)
    params = bind_params(text, dict(_parse_param(p) for p in args.param))
    rel = con.sql(text, params=params or None)
    if rel is None:  # a statement with no result (e.g. CREATE, SET)
        return
    if args.format == "parquet":
        if not args.output:
            raise ValueError("--format parquet needs --output FILE")
        rel.to_parquet(args.output)
        print(f"wrote {args.output}", file=sys.stderr)
        return
    note = ""
    if args.format == "table":
        df = rel.limit(args.max_rows + 1).df()
        if len(df) > args.max_rows:
            df, note = df.head(args.max_rows), f", first {args.max_rows} shown: raise --max-rows"
    else:
        df = rel.df()
    if args.output:
        with open(args.output, "w") as out:
            _write_frame(df, args.format, out, note)
    else:
        _write_frame(df, args.format, sys.stdout, note)


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
            documented = sorted(COLUMNS)
            raise ValueError(f"no view {name!r} over {args.data}/ (present: {present}; "
                             f"documented: {documented})")
        print(f"{name}:")
        for column, dtype, doc in describe(con, name):
            print(f"  {column:28s} {dtype:10s} {doc}")


def cmd_setup(args: argparse.Namespace, con: duckdb.DuckDBPyConnection) -> None:
    print("\n".join(setup_sql(args.data)))


def cmd_shell(args: argparse.Namespace, con: duckdb.DuckDBPyConnection) -> None:
    banner = (f"DuckDB connection `con` with views {views(con)}.\n"
              "Try: con.sql('select pair, avg(js) from tokens group by pair').show()")
    code.interact(banner=banner, local={"con": con, "duckdb": duckdb})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlvr", description="Query the rlvr-lens warehouse.")
    parser.add_argument("--data", type=Path, default=Path("data"),
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rlvr` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        con = connect(args.data)
        args.run(args, con)
    except (duckdb.Error, ValueError, OSError) as e:
        # a user's query or input error: DuckDB's own message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
