"""The DuckDB warehouse: stable view names over the pipeline's parquet tables.

Paths are bound here, in Python; SQL files only name the views (`tokens`, `samples`, ...), the
way dbt's `ref` works. A table directory is read only once its `_COMPLETE` marker exists, so a
stage that is still writing (or rewriting) a table never shows half of it. `COLUMNS` documents
every column in one place; `rlvr describe` prints it.

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

from rlvr.store.atomic import is_complete
from rlvr.warehouse.sql import SQL_DIR
from rlvr.warehouse.staging import STAGING, add_staging, staging_sql

# view name -> (directory or file under the data root, the stage that writes it)
SOURCES = {
    "samples": ("samples", "sample"),
    "tokens": ("tokens", "score"),
    "cross_samples": ("cross/samples", "cross_sample"),
    "cross_tokens": ("cross/tokens", "cross_sample"),
    "training": ("weighted/training.parquet", "weighted_summary"),
    "decisiveness": ("decisive/positions", "decisive"),
}

COLUMNS: dict[str, dict[str, str]] = {
    "tokens": {
        "pair": "model pair `<base>__<tuned>`, e.g. base__rl, base__sft, base__rl_step_40 (key)",
        "generator": "which model of the pair wrote the response: 'base' or 'tuned' (key)",
        "tuned_kind": "kind of the pair's tuned model: rl, sft, rft, checkpoint, user",
        "rl_step": "RL step of the tuned model when it is a checkpoint (rl_step_<N>), else null",
        "prompt_id": "problem id (key)",
        "sample_id": "response number for this prompt and generator (key)",
        "position": "0-based token position in the response (key)",
        "n_tokens": "response length in tokens, EOS included",
        "token_id": "realised token id (shared vocabulary)",
        "token_text": "realised token as text",
        "role": "testbed role (rlvr.testbed.grammars; null: user data): method, verify, operand, "
                "intermediate, check, format, final_answer, other",
        "reward": "grader reward of the whole response, 0 or 1",
        "logprob_base": "log pi_base(realised token | prefix), nats",
        "logprob_tuned": "log pi_tuned(realised token | prefix), nats",
        "delta_logprob": "logprob_tuned - logprob_base",
        "entropy_base": "entropy of the base next-token distribution, nats, full vocabulary",
        "entropy_tuned": "entropy of the tuned next-token distribution, nats, full vocabulary",
        "js": "Jensen-Shannon divergence base vs tuned, nats, exact over the vocabulary, [0, ln 2]",
        "js_top_p": "JS on top-p truncated, renormalised supports (the study's approximation)",
        "kl_base_tuned": "KL(base || tuned), nats",
        "kl_tuned_base": "KL(tuned || base), nats",
        # tie rule of every rank, top-1 and top-k set (rlvr.tokens.pairstats): ids ordered by
        # logit, highest first, equal logits by lowest id first
        "rank_base": "rank of the realised token under base (1 = top; ties: lower id first)",
        "rank_tuned": "rank of the realised token under tuned (1 = top; ties: lower id first)",
        "top1_base": "base model's most likely token id (ties: the lowest id)",
        "top1_tuned": "tuned model's most likely token id (ties: the lowest id)",
        "rank_in_base_of_top1_tuned": "rank under base of the tuned top-1 token (1 = same top-1)",
        "rank_in_tuned_of_top1_base": "rank under tuned of the base top-1 token (1 = same top-1)",
        "prob_base_of_top1_tuned": "base probability of the tuned top-1 token",
        **{f"topk_overlap_{k}": f"|top-{k} base & top-{k} tuned| / {k} (sets by the tie rule)"
           for k in range(1, 6)},
    },
    "samples": {
        "model": "model that wrote the response (base, rl, sft, rft, rl_step_<N>) (key)",
        "model_kind": "base, rl, sft, rft, checkpoint or user",
        "rl_step": "RL step of a checkpoint model, else null",
        "prompt_id": "problem id (key)",
        "sample_id": "response number for this prompt and model (key)",
        "prompt": "prompt text",
        "answer": "reference answer",
        "prompt_token_ids": "exact ids fed to the model before the response (BOS, template)",
        "response_token_ids": "exact generated ids",
        "response_text": "decoded response",
        "n_tokens": "response length in tokens, EOS included",
        "finish_reason": "'eos' or 'length'",
        "reward": "grader reward, 0 or 1",
        "sampling_logprobs": "log-prob of each generated token under the sampler",
        "temperature": "sampling temperature",
        "top_p": "sampling top-p",
        "max_new_tokens": "sampling length cap",
        "seed": "sampling seed",
    },
    "stg_pairs": {
        "pair": "model pair `<base>__<tuned>` (key)",
        "base_model": "the pair's base model name",
        "tuned_model": "the pair's tuned model name",
        "tuned_kind": "rl, sft, rft, checkpoint or user",
        "rl_step": "RL step of a checkpoint pair (rl_step_<N>); null otherwise",
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
    "cross_samples": {
        "arm": "the intervention: direction, then -a<alpha> (extrapolation blend) and "
               "-top<K> (the companion's top-K mixing), e.g. forward, extrapolate-a0.1",
        "direction": "forward (primary base, intervention tuned), backward (the reverse) or "
                     "extrapolate (primary tuned, switched tokens from the blend)",
        "alpha": "extrapolation: switched tokens drawn from exp((1+alpha) log p_tuned - alpha "
                 "log p_base), normalised; 0 = the intervention model itself",
        "top_k": "0: exact draw over the vocabulary; K: the companion's top-K mixing",
        "pair": "model pair `<base>__<tuned>`",
        "primary_model": "model that samples unless the rule switches",
        "intervention_model": "model sampled at switched positions",
        "rule": "switch rule (rlvr.cross.sweep.RULE_SIGNALS): js, entropy (base entropy), "
                "entropy_primary, delta, gap_neg/gap_pos (signed gap of the primary's candidate), "
                "gap_top_*, kl_base_tuned, kl_tuned_base, kl_sym, kl_sym_topk, early, random; "
                "the endpoints none (primary alone) and all (every token switched)",
        "target_budget": "budget the threshold was calibrated to (mean per-response share; "
                         "0 / 1 for none / all)",
        "calibration_round": "calibration round of the threshold (0 for the endpoints)",
        "threshold": "the rule's calibrated threshold (nats; a rate for random, the mean rate "
                     "when matched per response)",
        "matched_rule": "random matched per response: the rule whose per-response shares it "
                        "copies; null otherwise",
        "seed": "sampling seed",
        "prompt_id": "problem id",
        "sample_id": "response number",
        "prompt": "prompt text",
        "answer": "reference answer",
        "prompt_token_ids": "exact ids fed before the response",
        "response_token_ids": "exact generated ids",
        "response_text": "decoded response",
        "n_tokens": "response length",
        "n_switched": "tokens drawn from the intervention model (the budget, as a count)",
        "switch_share": "n_switched / n_tokens (the budget, as a share)",
        "finish_reason": "'eos' or 'length'",
        "reward": "grader reward, 0 or 1",
        "temperature": "sampling temperature",
        "top_p": "sampling top-p",
        "max_new_tokens": "sampling length cap",
    },
    "cross_tokens": {
        "arm": "the intervention (see cross_samples.arm)",
        "direction": "forward, backward or extrapolate",
        "pair": "model pair",
        "rule": "switch rule",
        "target_budget": "budget the threshold was calibrated to",
        "threshold": "the rule's threshold",
        "seed": "sampling seed",
        "prompt_id": "problem id",
        "sample_id": "response number",
        "position": "0-based position in the response",
        "token_id": "sampled token id",
        "token_text": "sampled token as text",
        "is_switched": "true when the intervention model drew this token",
        "source_model": "model the token was drawn from",
        "js": "JS between the two next-token distributions at this step, nats",
        "entropy_primary": "primary model's entropy at this step, nats",
        "entropy_intervention": "intervention model's entropy at this step, nats",
        "logprob_primary": "primary model's log-prob of the chosen token",
        "logprob_intervention": "intervention model's log-prob of the chosen token",
        "delta_top": "|log p_int - log p_prim| of the primary's top token (the delta rule)",
        "gap_top": "log p_int - log p_prim of the primary's top token, signed",
        "gap_sampled": "log p_int - log p_prim of the primary's candidate (its draw with the "
                       "step's uniform), signed",
        "kl_primary_intervention": "KL(primary || intervention) at this step, nats",
        "kl_intervention_primary": "KL(intervention || primary) at this step, nats",
        "kl_sym": "mean of the two KLs",
        "kl_sym_topk": "the companion's 'js' gate: mean of both KLs on the primary's top-K "
                       "tokens, both renormalised there",
        "mix_tv": "top-K arms, switched steps: total variation between the exact and the top-K "
                  "switch distributions; null elsewhere",
        "mix_differs": "top-K arms, switched steps: the exact draw with the same uniform is a "
                       "different token; null elsewhere",
    },
    "decisiveness": {
        "model": "generator: wrote the response and rolls it out (key)",
        "model_kind": "base, rl, sft, rft, checkpoint or user",
        "prompt_id": "problem id (key)",
        "sample_id": "response number, as in `samples` (key)",
        "position": "0-based token position in the response (key)",
        "n_tokens": "response length in tokens, EOS included",
        "token_id": "realised token id",
        "reward": "grader reward of the response, 0 or 1",
        "prob_token": "probability of the realised token under the generator's sampling",
        "stratum": "the design's stratum: all | response (exhaustive); bound | js | entropy | "
                   "uniform (stratified)",
        "inclusion_prob": "probability the design measures this position (weight 1 / it)",
        "status": "fixed (K rollouts) | bound (1 - prob_token below every cut: never pivotal, "
                  "no rollout) | decided | capped | no_streams (sequential) | unsampled",
        "n_rollouts": "K: rollout streams considered, common random numbers across positions",
        "n_resampled_other": "streams whose resampled token differs from the realised one (the "
                             "sequential design rolls out only these)",
        "value_before": "V(prefix before the token): success chance when the token is resampled",
        "value_before_low": "Wilson interval low of value_before (decisive.alpha; sequential: "
                            "not adjusted for stopping)",
        "value_before_high": "Wilson interval high of value_before",
        "value_after": "V(prefix through the token): success chance after it",
        "value_after_low": "Wilson interval low of value_after",
        "value_after_high": "Wilson interval high of value_after",
        "delta_value": "value_after - value_before: how much committing to the token moved "
                       "the chance of success (pivotal when |.| is large); null if not rolled out",
        "delta_low": "interval low of delta_value: paired bootstrap (fixed), anytime-valid "
                     "betting interval (sequential), -(1 - prob_token) (bound)",
        "delta_high": "interval high of delta_value",
    },
    "training": {
        "variant": "training variant (baseline or divergence/sign of alpha)",
        "divergence": "k3_old, js_base or delta_base",
        "alpha": "sigmoid slope; > 0 boosts high-divergence tokens",
        "s": "weight strength: w in (1 - s/2, 1 + s/2)",
        "seed": "training seed",
        "step": "training step",
        "metric": "metric name",
        "value": "metric value",
    },
}


def complete_files(root: str | Path) -> list[Path]:
    """Parquet files of the table at `root` whose write finished, sorted.

    A single file counts as it is (files are written under a temporary name and renamed). A
    directory counts only once its `_COMPLETE` marker exists (written last, withdrawn while a
    rerun modifies it); hidden in-flight temporary files and directories below it are skipped.
    """
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix == ".parquet" else []
    if not is_complete(root):
        return []
    return [p for p in sorted(root.rglob("*.parquet"))
            if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts)]


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
    found = {name: complete_files(Path(data_dir) / sub) for name, (sub, _) in SOURCES.items()}
    return {name: files for name, files in found.items() if files}


def setup_sql(data_dir: str | Path = "data", sql_dir: str | Path = SQL_DIR) -> list[str]:
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
    data_dir: str | Path = "data", sql_dir: str | Path = SQL_DIR, threads: int | None = None,
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
        relation = _register_table(con, name, Path(data_dir) / SOURCES[name][0], files)
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
    if name not in SOURCES:
        return None
    sub, stage = SOURCES[name]
    path = Path(data_dir) / sub
    state = "is not complete" if path.exists() else "has not been produced"
    return f"table `{name}` {state} ({path}): run the {stage} stage (dvc repro {stage})"


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
