"""Great Expectations gates: clean tables pass, each kind of planted bad row fails."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import sample_rows
from rlvr.models.specs import ModelEntry, ModelSpec
from rlvr.store.gates import GateFailed, check_samples, check_tokens
from rlvr.testbed.digits import grade, label_roles
from rlvr.testbed.model import build_tokenizer
from rlvr.testbed.prompts import task_prompts
from rlvr.tokens.scorer import Response, ScoreParams, score_responses

ENTRY = ModelEntry("base", "base", None, ModelSpec(name="base", path="in-memory"))
VOCAB = len(build_tokenizer())


@pytest.fixture(scope="module")
def samples(tiny_model, tokenizer) -> pd.DataFrame:
    records = task_prompts(n_eval=3, seed=0, min_digits=4, max_digits=5)
    table = sample_rows(tiny_model, tokenizer, ENTRY, records, 2,
                        SamplingParams(max_new_tokens=8, seed=0), grade)
    return table.to_pandas()


@pytest.fixture(scope="module")
def tokens(tiny_pair, tokenizer, samples) -> pd.DataFrame:
    responses = [Response(r.prompt_id, r.sample_id, list(r.prompt_token_ids),
                          list(r.response_token_ids), r.reward) for r in samples.itertuples()]
    tables = score_responses(*tiny_pair, tokenizer, responses, "base__rl", "base",
                             ScoreParams(), label_roles)
    return pa.concat_tables(list(tables)).to_pandas()


def test_clean_tables_pass_and_results_are_saved(samples, tokens, tmp_path) -> None:
    summary = check_tokens(tokens, "tokens", VOCAB, tmp_path / "tokens.json")
    assert summary["rows"] == len(tokens)
    assert json.loads((tmp_path / "tokens.json").read_text())["success"] is True
    check_samples(samples, "samples", tmp_path / "samples.json")


def _set(df: pd.DataFrame, row: int, col: str, value) -> pd.DataFrame:
    df = df.copy()
    df.loc[df.index[row], col] = value
    return df


PLANTED = [
    # (how to break one row, the check that must flag it, the start of that row's verdict)
    (lambda df: _set(df, 3, "js", np.nan), "bounds_check", "js is null"),
    (lambda df: _set(df, 2, "js_top_p", 0.8), "bounds_check", "js_top_p outside [0, 0.69"),
    (lambda df: _set(df, 5, "kl_base_tuned", -0.1), "bounds_check", "kl_base_tuned outside"),
    (lambda df: _set(df, 1, "logprob_tuned", 0.5), "bounds_check", "logprob_tuned outside"),
    (lambda df: _set(df, 6, "rank_base", 0), "bounds_check", f"rank_base outside [1, {VOCAB}]"),
    (lambda df: _set(df, 7, "entropy_base", 5.0), "bounds_check", "entropy_base outside"),
    (lambda df: _set(df, 8, "delta_logprob", 3.0), "delta_check", "delta_logprob != "),
    (lambda df: _set(df, 9, "topk_overlap_2", 0.75), "overlap_check", "topk_overlap_2 is not"),
    # a gap in the positions of the last response, and a wrong n_tokens in the first one
    (lambda df: df.drop(df.index[df.position == 1][-1]), "response_check", ""),
    (lambda df: _set(df, 0, "n_tokens", 99), "response_check", ""),
]


def test_each_planted_bad_row_fails_the_token_gate(tokens, tmp_path) -> None:
    """All plants in one table (one GX run, for speed); each must show among its check's
    offending rows in the saved result, and each check gets one line naming a row."""
    bad = pd.concat([tokens.iloc[[4]], tokens], ignore_index=True)  # a duplicate key, first
    bad.loc[:, "reward"] = bad.reward.where(bad.index != bad.index[-1], 2)  # a reward of 2
    for breaker, _, _ in PLANTED:
        bad = breaker(bad)
    with pytest.raises(GateFailed) as err:
        check_tokens(bad, "tokens", VOCAB, tmp_path / "t.json")
    lines = str(err.value).splitlines()
    assert lines[0].startswith("quality gate `tokens` failed ") and "t.json" in lines[0]
    flagged = {r["expectation_config"]["kwargs"].get("column"): r["result"]
               for r in json.loads((tmp_path / "t.json").read_text())["results"]
               if not r["success"]}
    for _, check, start in PLANTED:
        hits = [v for v in flagged[check]["partial_unexpected_list"] if f": {start}" in v]
        assert hits, f"{check}: no verdict {start!r} in {flagged[check]}"
        assert re.search(r"sum-\d+/\d+ position \d+: ", hits[0]) or check == "response_check"
        assert any(ln.startswith(f"- {check}: ") for ln in lines), lines
    assert flagged["bounds_check"]["unexpected_count"] == 6
    assert any(ln.startswith("- reward not in [0, 1]: 1 of ") for ln in lines)
    assert any(ln.startswith("- duplicate key ['pair', 'generator', 'prompt_id', 'sample_id', "
                             "'position']: 2 of ") for ln in lines)
    # a cross-row check alone fails too, on one line
    with pytest.raises(GateFailed, match="response_check") as err:
        check_tokens(PLANTED[-2][0](tokens), "tokens", VOCAB, tmp_path / "t.json")
    assert len(str(err.value).splitlines()) == 1


def test_planted_bad_rows_fail_the_samples_gate(samples, tmp_path) -> None:
    bad = _set(samples, 0, "finish_reason", "stop")
    bad = _set(bad, 1, "n_tokens", 77)
    bad = pd.concat([bad, bad.iloc[[2]]])
    with pytest.raises(GateFailed) as err:
        check_samples(bad, "samples", tmp_path / "s.json")
    for needle in ("finish_reason not in ['eos', 'length']", "length_check: 1 of 7 rows",
                   "duplicate key ['model', 'prompt_id', 'sample_id']: 2 of 7 rows",
                   "sample_id_check: 3 of 7 rows fail; e.g. sum-"):
        assert needle in str(err.value), needle


def test_saved_result_is_stable_across_runs(samples, tmp_path) -> None:
    """The same data validated twice writes identical files: no run ids or clock times, so a
    rerun does not show DVC a changed output."""
    check_samples(samples, "samples", tmp_path / "a.json")
    check_samples(samples, "samples", tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
