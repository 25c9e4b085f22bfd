"""The staging models: the pieces of SQL several queries share, dbt style, in `sql/staging/`.

Each model is created on a warehouse connection once the views it reads exist: a view when it
takes no parameter, a table macro when it does (DuckDB cannot keep a `$name` in a view), which
a query calls with its own parameters, e.g. `from stg_token_subsets($tau)`.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import duckdb

from rlvr.warehouse.sql import SQL_DIR, load_sql

# sql/staging/<name>.sql over the views it needs, created when those exist, in this order (a
# model may use an earlier one); a model with parameters (listed here) is a table macro
STAGING: dict[str, tuple[tuple[str, ...], str | None]] = {  # name -> (views, macro parameters)
    "stg_pairs": (("tokens",), None),
    "stg_pair_js": (("tokens",), None),
    "stg_token_subsets": (("tokens",), "tau"),
    "stg_js_by_bin": (("tokens",), "binning, tau, n_bins := 1, edges := [0.0]"),
    "stg_decisive_tokens": (("tokens", "decisiveness"), "pair_name"),
    "stg_cross_prompts": (("cross_samples",), None),
    "stg_bootstrap_draws": ((), "n_clusters, n_bootstrap, bootstrap_seed"),
}

# the staging models' columns, as `rlvr describe` prints them (the tables': rlvr.store.registry)
STAGING_DOCS: dict[str, dict[str, str]] = {
    "stg_pairs": {
        "pair": "model pair `<base>__<tuned>` (key)",
        "base_model": "the pair's base model name",
        "tuned_model": "the pair's tuned model name",
        "tuned_kind": "rl, sft, rft, checkpoint or user",
        "rl_step": "RL step of a checkpoint pair (rl_step_<N>); null otherwise",
    },
    "stg_pair_js": {
        "pair": "model pair `<base>__<tuned>`, RL checkpoints left out",
        "generator": "base or tuned: who wrote the response",
        "js": "JS divergence at the position, nats (double)",
    },
    "stg_cross_prompts": {
        "arm": "the intervention (key)",
        "rule": "switch rule (key)",
        "target_budget": "budget the threshold was calibrated to (key)",
        "prompt_id": "problem id (key)",
        "n_correct": "responses with reward 1, seeds pooled",
        "n_responses": "responses, seeds pooled",
        "prompt_index": "0-based index of the prompt in its cell, in prompt_id order",
    },
}


def _views(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.sql("select view_name from duckdb_views() where not internal")
            .fetchall()]


def staging_sql(available: Collection[str], sql_dir: str | Path = SQL_DIR) -> dict[str, str]:
    """CREATE VIEW / MACRO statements of the staging models whose views are `available`."""
    statements = {}
    for name, (needs, params) in STAGING.items():
        if set(needs) <= set(available):
            body = load_sql(name, sql_dir).strip().rstrip(";")
            head = f"view {name} as" if params is None else f"macro {name}({params}) as table"
            statements[name] = f"create or replace {head}\n{body};"
    return statements


def add_staging(con: duckdb.DuckDBPyConnection, sql_dir: str | Path = SQL_DIR) -> list[str]:
    """Create on `con` the staging models that its views allow; returns their names. A model
    over columns a table lacks (a hand-made or partial table) is left out: DuckDB binds a model
    when it is created, and a query that uses it then fails naming it."""
    made = []
    for name, statement in staging_sql(_views(con), sql_dir).items():
        try:
            con.sql(statement)
            made.append(name)
        except duckdb.BinderException:
            continue
    return made
