"""Accuracy by budget and paired comparisons: the SQL against pandas, the half-gain metrics."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rlvr.cross.budgets import budget_metrics, comparisons, half_gain_budget, rule_vs_random
from rlvr.warehouse.sql import run_sql
from rlvr.warehouse.staging import add_staging


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


def _curve_row(direction, rule, target, share, acc, tokens, alpha=0.0, top_k=0):
    arm = direction + (f"-a{alpha:g}" if alpha else "") + (f"-top{top_k}" if top_k else "")
    return {"arm": arm, "direction": direction, "alpha": alpha, "top_k": top_k, "rule": rule,
            "target_budget": target, "budget_share": share,
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
    versus = [{"comparison": "minus_random", "arm": "forward", "rule": "js",
               "target_budget": 0.1, "diff": 0.25, "diff_low": 0.1, "diff_high": 0.4}]
    calibration = [{"arm": "forward", "rule": "js", "target_budget": 0.1, "is_final": True,
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


ARMS = {"forward": ("forward", 0.0, 0), "backward": ("backward", 0.0, 0),
        "extrapolate-a0.1": ("extrapolate", 0.1, 0), "forward-top50": ("forward", 0.0, 50)}


def _fake_samples(rng, n_prompts=40, n_samples=4, seeds=(0, 1), arms=("forward", "backward")):
    """Rule and random cells sharing prompt difficulty (so pairing matters), plus endpoints."""
    rows = []
    difficulty = rng.uniform(size=n_prompts)
    for arm in arms:
        direction, alpha, top_k = ARMS[arm]
        for rule, target, lift in (("js", 0.1, 0.15), ("random", 0.1, 0.0), ("none", 0.0, 0.0),
                                   ("entropy", 0.1, 0.05), ("all", 1.0, 0.1)):
            for seed in seeds:
                for p in range(n_prompts):
                    for s in range(n_samples):
                        n_tokens = int(rng.integers(5, 20))
                        rows.append({
                            "arm": arm, "direction": direction, "alpha": alpha, "top_k": top_k,
                            "rule": rule, "target_budget": target,
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
    add_staging(con)
    return con


PARAMS = {"n_bootstrap": 2000, "alpha": 0.05, "bootstrap_seed": 3}


def test_accuracy_by_budget_sql_matches_pandas(tmp_path):
    df = _fake_samples(np.random.default_rng(0), arms=tuple(ARMS))
    got = run_sql(_con(tmp_path, df), "agg_cross_accuracy_by_budget", PARAMS).to_pandas()
    assert len(got) == 20 and not got[["arm", "rule", "target_budget"]].duplicated().any()
    for _, row in got.iterrows():
        cell = df[(df.arm == row.arm) & (df.rule == row.rule)]
        assert (row.direction, row.alpha, row.top_k) == ARMS[row.arm]
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


def test_comparisons_name_each_cell_and_its_reference():
    curve = [_curve_row("forward", r, b, b, 0.5, 1.0) for r, b in
             (("none", 0.0), ("all", 1.0), ("js", 0.1), ("random", 0.1), ("entropy", 0.2))]
    curve += [_curve_row("backward", r, b, b, 0.5, 1.0) for r, b in (("none", 0.0), ("all", 1.0))]
    curve += [_curve_row("extrapolate", r, b, b, 0.5, 1.0, alpha=0.1)
              for r, b in (("none", 0.0), ("all", 1.0), ("js", 0.1))]
    curve += [_curve_row("forward", r, b, b, 0.5, 1.0, alpha=0.1)
              for r, b in (("none", 0.0), ("all", 1.0), ("js", 0.1))]
    curve += [_curve_row("forward", r, b, b, 0.5, 1.0, top_k=50)
              for r, b in (("none", 0.0), ("all", 1.0), ("kl_sym_topk", 0.1), ("js", 0.3))]
    got = {(r["comparison"], r["arm"], r["rule"], r["target_budget"]):
           (r["reference_arm"], r["reference_rule"], r["reference_budget"])
           for r in comparisons(curve).to_pylist()}
    expected = {
        ("minus_random", "forward", "js", 0.1): ("forward", "random", 0.1),
        # entropy at 0.2 has no random cell at 0.2: no minus_random
        ("minus_primary", "forward", "js", 0.1): ("forward", "none", 0.0),
        ("minus_primary", "forward", "random", 0.1): ("forward", "none", 0.0),
        ("minus_primary", "forward", "entropy", 0.2): ("forward", "none", 0.0),
        ("minus_primary", "forward", "all", 1.0): ("forward", "none", 0.0),
        ("minus_primary", "backward", "all", 1.0): ("backward", "none", 0.0),
        ("minus_primary", "extrapolate-a0.1", "js", 0.1): ("extrapolate-a0.1", "none", 0.0),
        ("minus_primary", "extrapolate-a0.1", "all", 1.0): ("extrapolate-a0.1", "none", 0.0),
        ("minus_tuned", "extrapolate-a0.1", "js", 0.1): ("extrapolate-a0.1", "none", 0.0),
        ("minus_tuned", "extrapolate-a0.1", "all", 1.0): ("extrapolate-a0.1", "none", 0.0),
        ("minus_primary", "forward-a0.1", "js", 0.1): ("forward-a0.1", "none", 0.0),
        ("minus_primary", "forward-a0.1", "all", 1.0): ("forward-a0.1", "none", 0.0),
        # forward extrapolation (the companion's set-up) against the tuned model alone
        ("minus_tuned", "forward-a0.1", "js", 0.1): ("extrapolate-a0.1", "none", 0.0),
        ("minus_tuned", "forward-a0.1", "all", 1.0): ("extrapolate-a0.1", "none", 0.0),
        ("minus_primary", "forward-top50", "kl_sym_topk", 0.1): ("forward-top50", "none", 0.0),
        ("minus_primary", "forward-top50", "js", 0.3): ("forward-top50", "none", 0.0),
        ("minus_primary", "forward-top50", "all", 1.0): ("forward-top50", "none", 0.0),
        ("minus_exact", "forward-top50", "kl_sym_topk", 0.1): ("forward", "js", 0.1),
        ("minus_exact", "forward-top50", "all", 1.0): ("forward", "all", 1.0),
        # js at 0.3 has no exact js cell at 0.3: no minus_exact
    }
    assert got == expected


def test_paired_sql_is_a_paired_bootstrap(tmp_path):
    df = _fake_samples(np.random.default_rng(1), arms=tuple(ARMS))
    con = _con(tmp_path, df)
    curve = run_sql(con, "agg_cross_accuracy_by_budget", PARAMS).to_pylist()
    wanted = comparisons(curve)
    con.register("cross_comparisons", wanted)
    got = run_sql(con, "agg_cross_paired", PARAMS).to_pandas()
    assert len(got) == wanted.num_rows and set(got.comparison) == {
        "minus_random", "minus_primary", "minus_tuned", "minus_exact"}
    for _, row in got.iterrows():
        mine = df[(df.arm == row.arm) & (df.rule == row.rule)]
        ref = df[(df.arm == row.reference_arm) & (df.rule == row.reference_rule)]
        a = mine.groupby("prompt_id").reward.mean()
        b = ref.groupby("prompt_id").reward.mean()
        assert row["diff"] == pytest.approx(a.mean() - b.mean())
        assert row.accuracy_cell - row.accuracy_reference == pytest.approx(row["diff"])
        assert row.budget_reference == pytest.approx((ref.n_switched / ref.n_tokens).mean())
        # paired: the width follows the SE of the per-prompt differences ...
        d = a - b
        paired_se = d.std(ddof=0) / np.sqrt(len(d))
        width = row.diff_high - row.diff_low
        assert row.diff_low < row["diff"] < row.diff_high
        assert width == pytest.approx(2 * 1.96 * paired_se, rel=0.25)
        # ... which the shared prompt difficulty makes narrower than independent draws would
        unpaired_se = np.sqrt(a.var(ddof=0) / len(a) + b.var(ddof=0) / len(b))
        assert width < 0.85 * 2 * 1.96 * unpaired_se
    js = got[(got.comparison == "minus_random") & (got.arm == "forward") & (got.rule == "js")]
    assert js.iloc[0].diff_low > 0  # the planted +0.15 lift is found
    versus = rule_vs_random(pa.Table.from_pandas(got)).to_pandas()
    assert sorted(zip(versus.arm, versus.rule, strict=True)) == sorted(
        (arm, rule) for arm in ARMS for rule in ("entropy", "js"))
    assert (versus.accuracy_rule - versus.accuracy_random).tolist() == pytest.approx(
        versus["diff"].tolist())
