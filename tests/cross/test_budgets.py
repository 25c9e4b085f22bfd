"""Accuracy by budget and rule minus random: the SQL against pandas, the half-gain metrics."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from rlvr.cross.budgets import budget_metrics, half_gain_budget
from rlvr.warehouse.sql import run_sql


def test_half_gain_budget_table():
    rising = [(0.0, 0.1), (0.1, 0.3), (0.4, 0.5), (1.0, 0.5)]
    falling = [(0.0, 0.5), (0.2, 0.4), (0.5, 0.1), (1.0, 0.1)]
    cases = [
        (rising, 0.3, True, 0.1),  # reached exactly at a point
        (rising, 0.4, True, 0.25),  # half way between 0.1 and 0.4
        (rising, 0.1, True, 0.0),  # already there at budget 0
        (rising, 0.6, True, None),  # never reached
        (falling, 0.3, False, 0.2 + 0.3 * (0.1 / 0.3)),
    ]
    for points, target, up, expected in cases:
        got = half_gain_budget(points, target, up)
        assert (got is None and expected is None) or got == pytest.approx(expected), (target, got)


def _curve_row(direction, rule, target, share, acc, tokens):
    return {"direction": direction, "rule": rule, "target_budget": target, "budget_share": share,
            "accuracy": acc, "budget_tokens": tokens, "threshold": 0.1, "calibration_round": 1,
            "accuracy_low": acc - 0.1, "accuracy_high": acc + 0.1}


def test_budget_metrics_forward_and_backward():
    curve = [
        _curve_row("forward", "none", 0.0, 0.0, 0.2, 0.0),
        _curve_row("forward", "all", 1.0, 1.0, 0.6, 20.0),
        _curve_row("forward", "js", 0.1, 0.1, 0.5, 2.0),
        _curve_row("forward", "random", 0.1, 0.1, 0.25, 2.0),
        _curve_row("backward", "none", 0.0, 0.0, 0.6, 0.0),
        _curve_row("backward", "all", 1.0, 1.0, 0.2, 20.0),
        _curve_row("backward", "js", 0.2, 0.2, 0.2, 4.0),
    ]
    versus = [{"direction": "forward", "rule": "js", "target_budget": 0.1, "diff": 0.25,
               "diff_low": 0.1, "diff_high": 0.4}]
    calibration = [{"direction": "forward", "rule": "js", "target_budget": 0.1, "is_final": True,
                    "on_target": True}]
    m = budget_metrics(curve, versus, calibration)
    fwd = m["forward"]
    assert fwd["half_target"] == pytest.approx(0.4)
    # forward js: 0.2 -> 0.5 over [0, 0.1]: 0.4 is reached at 2/3 of the way
    assert fwd["half_gain"]["js"]["budget_share"] == pytest.approx(0.1 * 2 / 3)
    assert fwd["half_gain"]["js"]["budget_tokens"] == pytest.approx(2.0 * 2 / 3)
    # random: 0.25 at 0.1, then 0.6 at 1.0 -> (0.4 - 0.25) / 0.35 of the way from 0.1 to 1
    expected = 0.1 + 0.9 * 0.15 / 0.35
    assert fwd["half_gain"]["random"]["budget_share"] == pytest.approx(expected)
    assert m["backward"]["half_gain"]["js"]["budget_share"] == pytest.approx(0.1)
    point = fwd["budgets"]["0.1"]["js"]
    assert point["minus_random"] == 0.25 and point["minus_random_low"] == 0.1
    assert point["on_target"] is True and point["achieved_budget"] == 0.1
    assert "minus_random" not in fwd["budgets"]["0.1"]["random"]
    with pytest.raises(ValueError, match="endpoint"):
        budget_metrics([r for r in curve if r["rule"] != "all"])


def _fake_samples(rng, n_prompts=40, n_samples=4, seeds=(0, 1)):
    """Rule and random cells sharing prompt difficulty (so pairing matters), plus endpoints."""
    rows = []
    difficulty = rng.uniform(size=n_prompts)
    for direction in ("forward", "backward"):
        for rule, target, lift in (("js", 0.1, 0.15), ("random", 0.1, 0.0), ("none", 0.0, 0.0),
                                   ("entropy", 0.1, 0.05)):
            for seed in seeds:
                for p in range(n_prompts):
                    for s in range(n_samples):
                        n_tokens = int(rng.integers(5, 20))
                        rows.append({
                            "direction": direction, "rule": rule, "target_budget": target,
                            "calibration_round": 1, "threshold": 0.05, "matched_rule": None,
                            "primary_model": "base", "intervention_model": "rl", "seed": seed,
                            "prompt_id": f"p{p:03d}", "sample_id": s,
                            "reward": int(rng.uniform() < min(1, difficulty[p] + lift)),
                            "n_tokens": n_tokens,
                            "n_switched": int(rng.integers(0, n_tokens + 1)),
                        })
    return pd.DataFrame(rows)


def _con(tmp_path, df):
    df.to_parquet(tmp_path / "s.parquet")
    con = duckdb.connect()
    con.sql(f"create view cross_samples as select * from read_parquet('{tmp_path}/s.parquet')")
    return con


PARAMS = {"n_bootstrap": 2000, "alpha": 0.05, "bootstrap_seed": 3}


def test_accuracy_by_budget_sql_matches_pandas(tmp_path):
    df = _fake_samples(np.random.default_rng(0))
    got = run_sql(_con(tmp_path, df), "agg_cross_accuracy_by_budget", PARAMS).to_pandas()
    assert len(got) == 8 and not got[["direction", "rule", "target_budget"]].duplicated().any()
    for _, row in got.iterrows():
        cell = df[(df.direction == row.direction) & (df.rule == row.rule)]
        assert row.accuracy == pytest.approx(cell.reward.mean())
        assert row.budget_share == pytest.approx((cell.n_switched / cell.n_tokens).mean())
        assert row.budget_share_pooled == pytest.approx(cell.n_switched.sum() / cell.n_tokens.sum())
        assert row.budget_tokens == pytest.approx(cell.n_switched.mean())
        assert row.accuracy_seed_std == pytest.approx(cell.groupby("seed").reward.mean().std())
        assert (row.n_prompts, row.n_seeds, row.n_responses) == (40, 2, len(cell))
        # prompt-cluster bootstrap: the percentile interval is about +-1.96 cluster SEs wide
        prompt_means = cell.groupby("prompt_id").reward.mean()
        se = prompt_means.std(ddof=0) / np.sqrt(len(prompt_means))
        assert row.accuracy_low < row.accuracy < row.accuracy_high
        assert row.accuracy_high - row.accuracy_low == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_rule_vs_random_is_a_paired_bootstrap(tmp_path):
    df = _fake_samples(np.random.default_rng(1))
    got = run_sql(_con(tmp_path, df), "agg_cross_rule_vs_random", PARAMS).to_pandas()
    # one row per direction and non-random rule at the target; endpoints excluded
    assert sorted(zip(got.direction, got.rule, strict=True)) == [
        ("backward", "entropy"), ("backward", "js"), ("forward", "entropy"), ("forward", "js")]
    for _, row in got.iterrows():
        sub = df[df.direction == row.direction]
        rule = sub[sub.rule == row.rule].groupby("prompt_id").reward.mean()
        rand = sub[sub.rule == "random"].groupby("prompt_id").reward.mean()
        assert row["diff"] == pytest.approx(rule.mean() - rand.mean())
        assert row.accuracy_rule - row.accuracy_random == pytest.approx(row["diff"])
        assert row.budget_random == pytest.approx(
            (sub[sub.rule == "random"].n_switched / sub[sub.rule == "random"].n_tokens).mean())
        # paired: the width follows the SE of the per-prompt differences ...
        d = rule - rand
        paired_se = d.std(ddof=0) / np.sqrt(len(d))
        width = row.diff_high - row.diff_low
        assert row.diff_low < row["diff"] < row.diff_high
        assert width == pytest.approx(2 * 1.96 * paired_se, rel=0.2)
        # ... which the shared prompt difficulty makes narrower than independent draws would
        unpaired_se = np.sqrt(rule.var(ddof=0) / len(rule) + rand.var(ddof=0) / len(rand))
        assert width < 0.85 * 2 * 1.96 * unpaired_se
    js = got[(got.direction == "forward") & (got.rule == "js")].iloc[0]
    assert js.diff_low > 0  # the planted +0.15 lift is found
