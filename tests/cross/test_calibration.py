"""Matched budgets: the weighted-quantile threshold, the calibration rounds on a real tiny pair,
final-round choice and per-response random matching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from rlvr.cross import calibration, sweep
from rlvr.cross.calibration import threshold_for_budget
from rlvr.cross.sweep import CrossParams
from rlvr.layout import Layout
from rlvr.models.loading import save_model
from rlvr.models.specs import ModelsParams
from rlvr.testbed.prompts import task_prompts


def per_response_share(values, responses, t) -> float:
    """Brute force: mean over responses of the share of their tokens with value > t."""
    df = pd.DataFrame({"v": values, "r": responses})
    return float(df.assign(above=df.v > t).groupby("r").above.mean().mean())


def test_threshold_for_budget_against_brute_force():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, size=60)
    responses = np.repeat(np.arange(60), lengths)
    # ties on purpose: a third of the tokens are exactly 0 (like JS at forced tokens)
    values = np.where(rng.uniform(size=len(responses)) < 0.3, 0.0,
                      rng.exponential(size=len(responses)).round(2))
    candidates = np.unique(values)
    cuts = np.concatenate([[candidates[0] - 1], (candidates[1:] + candidates[:-1]) / 2])
    reachable = np.array([per_response_share(values, responses, c) for c in cuts])
    for target in (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.69, 0.7, 0.9):
        t = threshold_for_budget(values, responses, target)
        got = per_response_share(values, responses, t)
        # the nearest reachable share, and t never sits on a value
        assert abs(got - target) == pytest.approx(np.abs(reachable - target).min()), target
        assert not np.isin(t, values)


def test_threshold_weighs_tokens_per_response():
    # response a: one token (value 5); response b: nine tokens (value 1). Switching only above
    # 3 switches 1 of 10 tokens pooled, but half of the per-response budget
    values = np.array([5.0] + [1.0] * 9)
    responses = np.array(["a"] + ["b"] * 9)
    cases = [  # (target, expected threshold)
        (0.5, 3.0),  # between 1 and 5: a switches entirely, b not at all
        (0.1, 3.0),  # nearest reachable per-response share to 0.1 is 0.5, not 0 (|0.5-0.1|>0.1)
        (0.04, 6.0),  # nothing switched is nearer: above the largest value
        (1.0, 0.0),  # everything: below the smallest value
    ]
    for target, expected in cases:
        got = threshold_for_budget(values, responses, target)
        if expected == 6.0:
            assert got > 5.0 or per_response_share(values, responses, got) == 0.5, got
        else:
            assert got == pytest.approx(expected), (target, got)


@pytest.fixture(scope="module")
def pair_layout(tmp_path_factory, tiny_pair, tokenizer):
    layout = Layout(tmp_path_factory.mktemp("data"))
    for name, model in zip(("base", "rl"), tiny_pair, strict=True):
        save_model(model, tokenizer, layout.model_dir(name))
    return layout, {n: ModelsParams().spec(n, layout) for n in ("base", "rl")}


def test_calibration_rounds_hit_the_targets(pair_layout):
    layout, specs = pair_layout
    records = task_prompts(12, 0, 2, 4)
    cfg = CrossParams(samples_per_prompt=3, seeds=[0, 1], max_new_tokens=10,
                      rules=["js", "entropy", "random"], budgets=[0.1, 0.3],
                      budget_tolerance=0.15, calibration_rounds=2, arms=[])
    ends = sweep.endpoint_cells(cfg.grid(), "base", "rl", cfg.seeds)
    for c in ends:
        sweep.run_cell(c, specs, records, cfg, "toy", layout)
    pilot = [c for c in ends if c.rule == "none"]
    first = calibration.plan_round(cfg, layout, 1, pilot, [])
    assert len(first) == 2 * 3 * 2 * 2  # directions x rules x budgets x seeds
    # backward, entropy is the base model's: the intervention's signal, read from its column
    back = [c for c in first if c.direction == "backward" and c.rule == "entropy"]
    assert {c.switch_rule().name for c in back} == {"entropy_intervention"}
    for c in first:
        sweep.run_cell(c, specs, records, cfg, "toy", layout)
    # the pilot predicted each threshold's budget on the primary's own trajectories
    for c in (c for c in first if c.rule != "random" and c.seed == 0):
        values, responses = calibration.read_signals(
            layout, [p for p in pilot if p.direction == c.direction],
            *sweep.signal_column(c))
        predicted = per_response_share(values, responses, c.threshold)
        assert abs(predicted - c.target_budget) < 0.05, (c.name, predicted)
    second = calibration.plan_round(cfg, layout, 2, pilot, first)
    missed = {c.group for c in first} - {c.group for c in second}
    for group in missed:  # groups not re-planned were on target
        achieved = calibration.achieved_budget(layout, [c for c in first if c.group == group])
        assert calibration.on_target(achieved, group[2], cfg.budget_tolerance), group
    for c in second:
        sweep.run_cell(c, specs, records, cfg, "toy", layout)
    final = calibration.final_cells(layout, first + second)
    assert len(final) == len(first) and {c.group for c in final} == {c.group for c in first}
    table = calibration.calibration_table(layout, first + second, final, 0.15).to_pandas()
    assert table.is_final.sum() == 2 * 3 * 2 and len(table) == len(first + second) // 2
    for group, rows in table.groupby(["direction", "rule", "target_budget"]):
        best = (rows.achieved_budget - group[2]).abs().min()
        chosen = rows[rows.is_final].iloc[0]
        assert abs(chosen.achieved_budget - group[2]) == best  # the nearest round is kept
    # after (at most) two rounds most groups sit within 30% of their target
    error = (table[table.is_final].achieved_budget / table[table.is_final].target_budget - 1)
    assert (error.abs() < 0.3).mean() >= 0.75, table


def test_per_response_random_copies_js_shares(pair_layout):
    layout, specs = pair_layout
    records = task_prompts(10, 0, 2, 4)
    cfg = CrossParams(samples_per_prompt=4, seeds=[0], max_new_tokens=10, rules=["js", "random"],
                      directions=["forward"], arms=[],
                      budgets=[0.3], random_match="per_response")
    ends = sweep.endpoint_cells(cfg.grid(), "base", "rl", [0])
    for c in ends:
        sweep.run_cell(c, specs, records, cfg, "toy", layout)
    first = calibration.plan_round(cfg, layout, 1, ends[:1], [])
    assert [c.rule for c in first] == ["js"]  # random is matched, not calibrated
    sweep.run_cell(first[0], specs, records, cfg, "toy", layout)
    (matched,) = calibration.per_response_random(layout, first, records, 4)
    js_rows = pq.read_table(sweep.cell_path(layout, first[0], "samples")).to_pandas()
    assert matched.rates == tuple(js_rows.switch_share)
    assert matched.name == first[0].name.replace("-js-", "-random-")
    sweep.run_cell(matched, specs, records, cfg, "toy", layout)
    rand = pq.read_table(sweep.cell_path(layout, matched, "samples")).to_pandas()
    assert (rand.matched_rule == "js").all()
    # rows whose js response switched nothing / everything do the same at rate 0 / 1
    none, every = js_rows.switch_share == 0, js_rows.switch_share == 1
    assert (rand.switch_share[none] == 0).all() and (rand.switch_share[every] == 1).all()
    # and the mean budget matches within sampling error
    assert abs(rand.switch_share.mean() - js_rows.switch_share.mean()) < 0.1
