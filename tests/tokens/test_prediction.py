"""Failure prediction: the weighted AUROC against scipy's Mann-Whitney U, the bootstrap table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from rlvr.tokens.prediction import SUMMARIES, failure_prediction, weighted_auroc


def _auc_scipy(scores, failed) -> float:
    """P(failed > correct) + P(tie) / 2 = U / (n_failed n_correct), ties averaged by scipy."""
    u = stats.mannwhitneyu(scores[failed], scores[~failed]).statistic
    return u / (failed.sum() * (~failed).sum())


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_mann_whitney(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    failed = rng.random(n) < rng.uniform(0.2, 0.8)
    scores = rng.normal(size=n) + 0.7 * failed
    if seed % 2:  # coarse scores: many ties, counted half
        scores = np.round(scores, 1)
    prompts = rng.integers(0, 10, n)
    got = weighted_auroc(scores, failed, prompts, np.ones((1, 10)))[0]
    assert got == pytest.approx(_auc_scipy(scores, failed), abs=1e-12)


def test_weights_equal_repeating_each_prompt():
    rng = np.random.default_rng(7)
    n, p = 80, 12
    prompts = rng.integers(0, p, n)
    failed = rng.random(n) < 0.4
    scores = np.round(rng.normal(size=n) + failed, 1)
    weights = rng.integers(0, 4, size=(5, p))
    got = weighted_auroc(scores, failed, prompts, weights)
    for w, value in zip(weights, got, strict=True):
        repeat = w[prompts]  # a prompt drawn k times contributes its responses k times
        assert value == pytest.approx(_auc_scipy(np.repeat(scores, repeat),
                                                 np.repeat(failed, repeat)), abs=1e-12)
    no_correct = weighted_auroc(scores, np.ones(n, bool), prompts, np.ones((1, p)))
    assert np.isnan(no_correct).all()


def _responses(rng, n_prompts=60, per_prompt=4, lift=0.0):
    rows = []
    for p in range(n_prompts):
        difficulty = rng.uniform()
        for s in range(per_prompt):
            failed = rng.uniform() < difficulty
            base = rng.exponential(0.1)
            rows.append({"pair": "base__rl", "generator": "tuned", "prompt_id": f"p{p:03d}",
                         "sample_id": s, "reward": int(not failed),
                         "max_js": base + lift * failed, "mean_js": base / 3,
                         "mean_js_first": None if s == 0 and p == 0 else base / 2})
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)


def test_failure_prediction_table():
    table = failure_prediction(_responses(np.random.default_rng(0), lift=0.2), 400, 0.05, 3)
    df = table.to_pandas().set_index("summary")
    assert list(df.index) == list(SUMMARIES)
    assert (df.auroc_low <= df.auroc).all() and (df.auroc <= df.auroc_high).all()
    assert df.loc["max_js", "auroc_low"] > 0.5  # the planted signal is found
    assert df.loc["mean_js", "auroc_low"] < 0.5 < df.loc["mean_js", "auroc_high"]  # none here
    assert df.loc["mean_js_first", "n_responses"] == df.loc["max_js", "n_responses"] - 1
    again = failure_prediction(_responses(np.random.default_rng(0), lift=0.2), 400, 0.05, 3)
    assert again.equals(table)  # seeded: the same interval on a rerun
    # a prompt-cluster bootstrap: about as wide as the normal interval of the clustered AUROC
    width = df.loc["mean_js", "auroc_high"] - df.loc["mean_js", "auroc_low"]
    assert 0.05 < width < 0.4
