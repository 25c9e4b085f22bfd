"""Fault injection: each data fault planted in tables the sample and score stages wrote
(conftest's `scored_data`) is caught by its gate with one exact line per failed check, the gate
changes nothing, and the edited part no longer passes as current; every write attempt through
the warehouse is refused with a clear message and writes nothing."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlvr.cli import main
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams, plan_models
from rlvr.store.atomic import MARKER
from rlvr.store.gates import GateFailed, gate_samples_dir, gate_tokens_dir
from rlvr.store.tables import FINGERPRINT_KEY, part_is_current
from rlvr.testbed.digits import label_roles
from rlvr.testbed.graders import ROLES  # the gate: every testbed's roles and the answer rule's
from rlvr.testbed.model import build_tokenizer
from rlvr.tokens.scorer import ScoreParams, ScoreResources, score_shard
from rlvr.warehouse.views import connect

VOCAB = len(build_tokenizer())  # the task tokenizer's size (conftest's tiny models)
TOKENS = Path("tokens/pair=base__rl/generator=base")
SAMPLES = Path("samples/model=base")


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _gate(data: Path, result: Path, tokenizer) -> dict:
    return gate_tokens_dir(data / TOKENS, VOCAB, result, data / SAMPLES, tokenizer)


def test_clean_tables_pass(scored_data, tokenizer, tiny_pair, tmp_path):
    """No false alarm on what the stages wrote, nor on the scorer's two-pass (streamed
    vocabulary) path, whose floats differ in the last bits."""
    assert _gate(scored_data, tmp_path / "t.json", tokenizer)["rows"] > 150
    gate_samples_dir(scored_data / SAMPLES, tmp_path / "s.json")
    base, rl = plan_models(["base", "rl"], ModelsParams(), Layout(scored_data))
    streamed = tmp_path / "tokens/pair=base__rl/generator=base"
    for part in sorted((scored_data / SAMPLES).glob("part-*.parquet")):
        score_shard(base, rl, "base", part, streamed / part.name,
                    ScoreParams(resources=ScoreResources(vocab_chunk=48)), label_roles)
    gate_tokens_dir(streamed, VOCAB, tmp_path / "t2.json", scored_data / SAMPLES, tokenizer)


def _write_back(df: pd.DataFrame, part: Path) -> None:
    """Rewrite a part from `df` keeping its schema and footer metadata (fingerprint included),
    as a hand edit or a buggy writer would; floats stay as given (NaN is not null)."""
    schema, meta = pq.read_schema(part), pq.read_metadata(part).metadata
    cols = {f.name: pa.array(df[f.name].to_numpy(), f.type,
                             from_pandas=not pa.types.is_floating(f.type)) for f in schema}
    pq.write_table(pa.table(cols, schema=schema).replace_schema_metadata(meta), part)


def g(x: object) -> str:
    """How a gate prints a value: repr for text, 6 significant digits for numbers."""
    return repr(x) if isinstance(x, str) else f"{x:.6g}"


def at(df: pd.DataFrame, i: int, col: str, value) -> pd.DataFrame:
    df = df.copy()
    df.loc[i, col] = value
    return df


def first_response(df: pd.DataFrame) -> pd.Series:
    return (df.prompt_id == df.prompt_id[0]) & (df.sample_id == df.sample_id[0])


# A fault: (id, plant(part 0 as a dataframe) -> (planted dataframe, row it names), lines(the
# row before planting, the row after, rows in the partition) -> the gate's failure lines).
Fault = tuple[str, Callable, Callable]
W = "part-00000.parquet {r.prompt_id}/{r.sample_id} position {r.position}"


def line(check: str, count: int, what: str, **values) -> Callable:
    """A failure line of a helper-column check at the named row, with its values."""
    def make(before: pd.Series, after: pd.Series, n: int) -> str:
        shown = ", ".join(f"{c}={g(after[c]) if v is None else v}" for c, v in values.items())
        return (f"{check}: {count} of {n} rows fail; e.g. {W.format(r=after)}: {what}"
                + (f" ({shown})" if shown else ""))
    return make


def bounds(col: str, span: str) -> Callable:
    return line("bounds_check", 1, f"{col} outside {span}", **{col: None})


def response(what: str, count: int = 12) -> Callable:
    return lambda b, a, n: (f"response_check: {count} of {n} rows fail; e.g. "
                            f"{b.prompt_id}/{b.sample_id}: {what}")


def _rank_one_row(df: pd.DataFrame) -> int:
    """A row whose forged rank 1 breaks the tie rule (its token is not the base top-1) and no
    rule checked before it."""
    p = np.exp(df.logprob_base.astype(np.float64))
    ok = ((df.token_id != df.top1_base) & (df.entropy_base >= -df.logprob_base + 1e-3)
          & (p < df.prob_base_of_top1_tuned - 1e-3))
    return int(np.flatnonzero(ok)[0])


def _changed_js_row(df: pd.DataFrame) -> int:
    ok = df.js + 0.2 > (df.kl_base_tuned + df.kl_tuned_base) / 4 + 1e-3
    return int(np.flatnonzero(ok)[0])


LN2_SPAN = "[0, 0.693148]"
KL_SPAN, LP_SPAN = "[0, 10000]", "[-10000, 0]"
DIV_COLS = {"js": None, "kl_base_tuned": None, "kl_tuned_base": None}
# the 13 faults the gates missed (issue 16), then 11 they caught already
FAULTS: list[Fault] = [
    ("response_dropped", lambda df: (df[~first_response(df)], 0),
     [lambda b, a, n: f"sampled response {b.prompt_id}/{b.sample_id} has no token rows"]),
    ("logprob_base_-inf", lambda df: (at(df, 3, "logprob_base", -np.inf), 3),
     [bounds("logprob_base", LP_SPAN)]),
    ("kl_inf", lambda df: (at(df, 3, "kl_tuned_base", np.inf), 3),
     [bounds("kl_tuned_base", KL_SPAN)]),
    ("kl_1e30", lambda df: (at(df, 3, "kl_base_tuned", 1e30), 3),
     [bounds("kl_base_tuned", KL_SPAN)]),
    ("delta_not_difference", lambda df: (at(df, 3, "delta_logprob", df.delta_logprob[3] + .5), 3),
     [line("delta_check", 1, "delta_logprob != logprob_tuned - logprob_base",
           delta_logprob=None, logprob_tuned=None, logprob_base=None)]),
    ("rank_1_not_top1", lambda df: (at(df, r := _rank_one_row(df), "rank_base", 1), r),
     [line("rank_check", 1, "rank_base is 1 but the token is not top1_base, or the reverse "
           "(tie rule)", rank_base=None, token_id=None, top1_base=None, logprob_base=None,
           entropy_base=None)]),
    ("js_changed", lambda df: (at(df, r := _changed_js_row(df), "js", df.js[r] + 0.2), r),
     [line("divergence_check", 1, "js above (kl_base_tuned + kl_tuned_base) / 4", **DIV_COLS)]),
    ("topk_overlap_1_half", lambda df: (at(df, 3, "topk_overlap_1", 0.5), 3),
     [line("overlap_check", 1, "topk_overlap_1 is not a multiple of 1/1 in [0, 1]",
           **{f"topk_overlap_{k}": None for k in range(1, 6)})]),
    ("role_bogus", lambda df: (at(df, 3, "role", "bogus"), 3),
     [lambda b, a, n: f"role not in {list(ROLES)}: 1 of {n} rows; e.g. {W.format(r=a)}: "
                      "'bogus'"]),
    ("token_text_wrong", lambda df: (at(df, 3, "token_text", "bogus"), 3),
     [line("text_check", 1, "token_text is not the tokenizer's text of token_id",
           token_text=None, token_id=None)]),
    ("reward_differs_in_response",
     lambda df: (at(df.assign(reward=df.reward.astype("Int8")), 3, "reward", 1 - df.reward[3]), 3),
     [response("2 different rewards in one response"),
      line("samples_check", 1, "reward differs from the samples table", reward=None)]),
    ("unknown_sample_id", lambda df: (pd.concat([df, df[first_response(df)].assign(
        sample_id=99)], ignore_index=True), len(df)),
     [line("samples_check", 12, "no such response in the samples table", prompt_id=None,
           sample_id=None)]),
    ("null_reward", lambda df: (df.assign(reward=df.reward.astype("Int8").mask(
        first_response(df))), 0),
     [line("bounds_check", 12, "reward is null", reward="nan"),
      line("samples_check", 12, "reward differs from the samples table", reward="nan")]),
    ("js_nan", lambda df: (at(df, 3, "js", np.nan), 3),
     [line("bounds_check", 1, "js is null", js="nan")]),
    ("js_above_ln2", lambda df: (at(df, 3, "js", 0.9), 3),
     [bounds("js", LN2_SPAN),
      line("divergence_check", 1, "js above (kl_base_tuned + kl_tuned_base) / 4", **DIV_COLS)]),
    ("entropy_negative", lambda df: (at(df, 3, "entropy_tuned", -0.5), 3),
     [bounds("entropy_tuned", f"[0, {g(math.log(VOCAB) + 1e-6)}]")]),
    ("rank_zero", lambda df: (at(df, 3, "rank_tuned", 0), 3),
     [bounds("rank_tuned", f"[1, {VOCAB}]")]),
    ("prob_above_one", lambda df: (at(df, 3, "prob_base_of_top1_tuned", 1.5), 3),
     [bounds("prob_base_of_top1_tuned", "[0, 1]"),
      line("rank_check", 1, "prob_base_of_top1_tuned above 1 / rank_in_base_of_top1_tuned",
           rank_in_base_of_top1_tuned=None, prob_base_of_top1_tuned=None, top1_base=None,
           top1_tuned=None)]),
    ("token_id_out_of_vocabulary", lambda df: (at(df, 3, "token_id", VOCAB), 3),
     [bounds("token_id", f"[0, {VOCAB - 1}]"),
      line("text_check", 1, "token_text is not the tokenizer's text of token_id",
           token_text=None, token_id=None),
      line("samples_check", 1, "token_id differs from the sampled response_token_ids",
           token_id=None)]),
    ("duplicate_row", lambda df: (pd.concat([df, df.iloc[[3]]], ignore_index=True), 3),
     [lambda b, a, n: (f"duplicate key ['pair', 'generator', 'prompt_id', 'sample_id', "
                       f"'position']: 2 of {n} rows; e.g. {W.format(r=a)}"),
      response("13 rows at positions 0..11 (12 distinct) with n_tokens 12..12; a response has "
               "positions 0..n_tokens-1, once each", 13)]),
    ("position_missing", lambda df: (df.drop(index=3), 0),
     [response("11 rows at positions 0..11 (11 distinct) with n_tokens 12..12; a response has "
               "positions 0..n_tokens-1, once each", 11)]),
    ("n_tokens_wrong", lambda df: (at(df, 3, "n_tokens", 99), 3),
     [response("12 rows at positions 0..11 (12 distinct) with n_tokens 12..99; a response has "
               "positions 0..n_tokens-1, once each"),
      line("samples_check", 1, "n_tokens differs from the samples table", n_tokens=None)]),
    ("reward_out_of_set", lambda df: (df.assign(reward=df.reward.where(~first_response(df), 2)),
                                      0),
     [lambda b, a, n: f"reward not in [0, 1]: 12 of {n} rows; e.g. {W.format(r=a)}: 2",
      line("samples_check", 12, "reward differs from the samples table", reward="2")]),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f[0] for f in FAULTS])
def test_planted_token_fault_is_caught(fault, scored_data, tokenizer, tmp_path):
    name, plant, expected = fault
    data = tmp_path / "data"
    shutil.copytree(scored_data, data)
    part = data / TOKENS / "part-00000.parquet"
    key = pq.read_metadata(part).metadata[FINGERPRINT_KEY].decode()
    before = pq.read_table(part).to_pandas()
    planted, row = plant(before)
    _write_back(planted, part)
    n = len(planted) + pq.read_metadata(data / TOKENS / "part-00001.parquet").num_rows
    after = pq.read_table(part).to_pandas()
    lines = [make(before.iloc[min(row, len(before) - 1)], after.iloc[row], n) for make in expected]
    planted_state = _digests(data)
    result = tmp_path / "quality" / "t.json"
    with pytest.raises(GateFailed) as err:
        _gate(data, result, tokenizer)
    head = "quality gate `tokens_base__rl_base` failed"
    want = (f"{head} ({result}): {lines[0]}" if len(lines) == 1 else
            f"{head} {len(lines)} checks ({result}):\n" + "\n".join(f"- {x}" for x in lines))
    assert str(err.value) == want
    assert json.loads(result.read_text())["success"] is False
    assert _digests(data) == planted_state  # the gate reads, it never writes or removes
    assert (data / "tokens" / MARKER).exists()
    assert not part_is_current(part, key)  # the edited part is redone on the stage's rerun
    other = data / TOKENS / "part-00001.parquet"
    assert part_is_current(other, pq.read_metadata(other).metadata[FINGERPRINT_KEY].decode())


def test_planted_samples_fault_is_caught(scored_data, tmp_path):
    """The 24th fault: a whole sampled response dropped from the samples table."""
    data = tmp_path / "data"
    shutil.copytree(scored_data, data)
    part = data / SAMPLES / "part-00000.parquet"
    before = pq.read_table(part).to_pandas()
    _write_back(before.drop(index=1), part)
    planted_state = _digests(data)
    with pytest.raises(GateFailed) as err:
        gate_samples_dir(data / SAMPLES, tmp_path / "s.json")
    assert str(err.value) == (
        f"quality gate `samples_base` failed ({tmp_path / 's.json'}): sample_id_check: 2 of 17 "
        f"rows fail; e.g. {before.prompt_id[0]}: 2 responses with sample ids 0..2; most prompts "
        "have 3 (0..2)")
    assert _digests(data) == planted_state


WRITES = [
    # (what a user might type, the word the refusal names)
    ("copy tokens to '{data}/tokens/pair=base__rl/generator=base/zz.parquet'", "COPY"),
    ("copy tokens to '{data}/tokens/evil.parquet'", "COPY"),
    ("copy tokens to '{part}' (use_tmp_file false)", "COPY"),
    ("export database '{data}/dump'", "EXPORT"),
    ("attach '{data}/evil.db' as evil", "ATTACH"),
    ("install httpfs", "INSTALL"),
    ("load httpfs", "LOAD"),
    ("set enable_external_access = true", "SET"),
    ("create table t as select 1", "CREATE"),
]


@pytest.mark.parametrize("statement, verb", WRITES, ids=[w[1] + str(i) for i, w in
                                                          enumerate(WRITES)])
def test_rlvr_sql_refuses_writes(statement, verb, scored_data, capsys):
    data = scored_data
    part = data / TOKENS / "part-00000.parquet"
    state = _digests(data.parent)
    code = main(["--data", str(data), "sql", statement.format(data=data, part=part)])
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    assert out.err == (f"error: the warehouse is read-only: rlvr sql runs queries (SELECT, "
                       f"EXPLAIN, PRAGMA, CALL), not {verb}; save a result with "
                       "--format csv|json|parquet --output FILE\n")
    assert _digests(data.parent) == state


@pytest.mark.parametrize("statement", [w[0] for w in WRITES[:8]])
def test_the_connection_itself_refuses_new_files_and_extensions(statement, scored_data):
    """What `rlvr shell` and the analyses get: DuckDB's own lock, not just the CLI's check,
    the COPY over a part of the table included (every form: tests/warehouse/test_read_only)."""
    data = scored_data
    part = data / TOKENS / "part-00000.parquet"
    state = _digests(data.parent)
    con = connect(data)
    with pytest.raises(duckdb.Error, match="disabled|locked"):
        con.sql(statement.format(data=data, part=part))
    assert _digests(data.parent) == state
    assert con.sql("select count(*) from tokens").fetchall()[0][0] > 150  # still reads


def test_output_inside_a_table_is_refused(scored_data, capsys):
    code = main(["--data", str(scored_data), "sql", "--format", "parquet", "--output",
                 str(scored_data / "tokens" / "evil.parquet"), "select 1"])
    err = capsys.readouterr().err
    assert code == 1 and "inside the table" in err and "score stage" in err
    assert not (scored_data / "tokens" / "evil.parquet").exists()
