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
    # (how to break one row, column named by the failing expectation, expectation type)
    (lambda df: _set(df, 3, "js", np.nan), "js", "expect_column_values_to_not_be_null"),
    (lambda df: _set(df, 2, "js_top_p", 0.8), "js_top_p", "expect_column_values_to_be_between"),
    (lambda df: _set(df, 2, "kl_base_tuned", -0.1), "kl_base_tuned", "to_be_between"),
    (lambda df: _set(df, 1, "logprob_tuned", 0.5), "logprob_tuned", "to_be_between"),
    (lambda df: _set(df, 1, "rank_base", 0), "rank_base", "to_be_between"),
    (lambda df: _set(df, 0, "entropy_base", 5.0), "entropy_base", "to_be_between"),
    (lambda df: _set(df, 0, "reward", 2), "reward", "to_be_in_set"),
    (lambda df: pd.concat([df, df.iloc[[4]]]), "column_list", "compound_columns_to_be_unique"),
    # a gap in the positions of the last response, and a wrong n_tokens in the first one
    (lambda df: df.drop(df.index[df.position == 1][-1]), "response_check", "in_set"),
    (lambda df: _set(df, 0, "n_tokens", 99), "response_check", "in_set"),
]


def test_each_planted_bad_row_fails_the_token_gate(tokens, tmp_path) -> None:
    """All plants in one table (one GX run, for speed); each must produce its own failure."""
    bad = tokens
    for breaker, _, _ in PLANTED:
        bad = breaker(bad)
    with pytest.raises(GateFailed) as err:
        check_tokens(bad, "tokens", VOCAB, tmp_path / "t.json")
    lines = str(err.value).splitlines()[1:]
    for _, column, expectation in PLANTED:
        hits = [ln for ln in lines if expectation in ln and f"'{column}'" in ln]
        assert hits, f"no failure for {column} / {expectation} in:\n{err.value}"
        assert re.search(r": \d+ of \d+ rows fail; e\.g\. .+", hits[0]), hits[0]
    gap = [ln for ln in lines if "response_check" in ln][0]
    assert "n_tokens 8..99" in gap or "n_tokens 99" in gap or "distinct" in gap
    assert json.loads((tmp_path / "t.json").read_text())["success"] is False
    # a cross-row check alone fails too
    with pytest.raises(GateFailed, match="response_check"):
        check_tokens(PLANTED[-2][0](tokens), "tokens", VOCAB, tmp_path / "t.json")


def test_planted_bad_rows_fail_the_samples_gate(samples, tmp_path) -> None:
    bad = _set(samples, 0, "finish_reason", "stop")
    bad = _set(bad, 1, "n_tokens", 77)
    bad = pd.concat([bad, bad.iloc[[2]]])
    with pytest.raises(GateFailed) as err:
        check_samples(bad, "samples", tmp_path / "s.json")
    for needle in ("finish_reason", "length_check", "compound_columns_to_be_unique"):
        assert needle in str(err.value), needle



def test_saved_result_is_stable_across_runs(samples, tmp_path) -> None:
    """The same data validated twice writes identical files: no run ids or clock times, so a
    rerun does not show DVC a changed output."""
    check_samples(samples, "samples", tmp_path / "a.json")
    check_samples(samples, "samples", tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
