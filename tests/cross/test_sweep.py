"""The cross-sampling sweep: cells on disk, matched random rates, the budget SQL, the metrics."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from rlvr.config import from_section
from rlvr.cross import budgets, sweep
from rlvr.cross.budgets import budget_metrics, half_gain_budget
from rlvr.cross.sweep import CrossCell, CrossParams, CrossResources
from rlvr.layout import Layout
from rlvr.models.loading import save_model
from rlvr.models.specs import ModelsParams
from rlvr.testbed.prompts import task_prompts
from rlvr.warehouse.sql import run_sql
from rlvr.warehouse.views import connect


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: extra intra-op threads only spin on a busy machine
    yield
    torch.set_num_threads(before)


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


def _curve_row(direction, rule, share, acc, tokens):
    return {"direction": direction, "rule": rule, "budget_share": share, "accuracy": acc,
            "budget_tokens": tokens}


def test_budget_metrics_forward_and_backward():
    curve = [
        _curve_row("forward", "js", 0.0, 0.2, 0.0), _curve_row("forward", "js", 0.1, 0.5, 2.0),
        _curve_row("forward", "js", 1.0, 0.6, 20.0), _curve_row("forward", "random", 0.1, 0.25,
                                                                 2.0),
        _curve_row("backward", "js", 0.0, 0.6, 0.0), _curve_row("backward", "js", 0.2, 0.2, 4.0),
        _curve_row("backward", "js", 1.0, 0.2, 20.0),
    ]
    m = budget_metrics(curve)
    assert m["forward"]["half_target"] == pytest.approx(0.4)
    # forward js: 0.2 -> 0.5 over [0, 0.1]: 0.4 is reached at 2/3 of the way
    assert m["forward"]["js"]["half_gain_budget_share"] == pytest.approx(0.1 * 2 / 3)
    assert m["forward"]["js"]["half_gain_budget_tokens"] == pytest.approx(2.0 * 2 / 3)
    # random: 0.25 at 0.1, then 0.6 at 1.0 -> (0.4 - 0.25) / 0.35 of the way from 0.1 to 1
    expected = 0.1 + 0.9 * 0.15 / 0.35
    assert m["forward"]["random"]["half_gain_budget_share"] == pytest.approx(expected)
    assert m["backward"]["js"]["half_gain_budget_share"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="budget-0 or budget-1"):
        budget_metrics([r for r in curve if r["budget_share"] != 1.0])


def _fake_samples(rng, n_prompts=40, n_samples=4, seeds=(0, 1)):
    rows = []
    for direction in ("forward", "backward"):
        for rule, threshold in (("js", 0.1), ("random", 0.3)):
            for seed in seeds:
                for p in range(n_prompts):
                    difficulty = rng.uniform()
                    for s in range(n_samples):
                        n_tokens = int(rng.integers(5, 20))
                        rows.append({
                            "direction": direction, "rule": rule, "threshold": threshold,
                            "matched_threshold": 0.1 if rule == "random" else None,
                            "primary_model": "base", "intervention_model": "rl", "seed": seed,
                            "prompt_id": f"p{p:03d}", "sample_id": s,
                            "reward": int(rng.uniform() < difficulty), "n_tokens": n_tokens,
                            "n_switched": int(rng.integers(0, n_tokens + 1)),
                        })
    return pd.DataFrame(rows)


def test_accuracy_by_budget_sql_matches_pandas(tmp_path):
    rng = np.random.default_rng(0)
    df = _fake_samples(rng)
    df.to_parquet(tmp_path / "s.parquet")
    con = duckdb.connect()
    con.sql(f"create view cross_samples as select * from read_parquet('{tmp_path}/s.parquet')")
    got = run_sql(con, "agg_cross_accuracy_by_budget",
                  {"n_bootstrap": 2000, "alpha": 0.05, "bootstrap_seed": 3}).to_pandas()
    assert len(got) == 4 and not got[["direction", "rule", "threshold"]].duplicated().any()
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


@pytest.fixture(scope="module")
def family(tmp_path_factory, tiny_pair, tokenizer):
    """A layout whose models directory holds the tiny pair, and the pair's resolved specs."""
    layout = Layout(tmp_path_factory.mktemp("data"))
    for name, model in zip(("base", "rl"), tiny_pair, strict=True):
        save_model(model, tokenizer, layout.model_dir(name))
    return layout, {n: ModelsParams().spec(n, layout) for n in ("base", "rl")}


def _cfg(**kw) -> CrossParams:
    return CrossParams(**{"max_new_tokens": 8, "samples_per_prompt": 2,
                          "rules": {"js": [1.0, -1.0]}, **kw})


def test_cells_on_disk_match_random_publish_and_summarize(family):
    layout, specs = family
    records = task_prompts(6, 0, 2, 4)
    cfg = _cfg()
    out = layout.cross_dir
    rules = {"js": [1.0, 0.0015, -1.0]}
    cells = sweep.grid_cells(["forward", "backward"], "base", "rl", rules, [0, 1])
    summaries = [sweep.run_cell(c, specs, records, cfg, "toy", layout) for c in cells]
    assert len(summaries) == 12 and all(s["n_responses"] == 12 for s in summaries)
    random_cells = sweep.matched_random_cells(layout, cells)
    # one per (direction, seed) for the only js threshold that switched some but not all tokens
    assert sorted((c.direction, c.seed, c.matched_threshold) for c in random_cells) == [
        ("backward", 0, 0.0015), ("backward", 1, 0.0015),
        ("forward", 0, 0.0015), ("forward", 1, 0.0015)]
    for c in random_cells:
        js_rows = pd.concat(pq.read_table(out / "samples" / f"part-{k.name}.parquet").to_pandas()
                            for k in cells if k.direction == c.direction and k.threshold == 0.0015)
        assert c.threshold == pytest.approx(js_rows.n_switched.sum() / js_rows.n_tokens.sum())
        sweep.run_cell(c, specs, records, cfg, "toy", layout)
    stale = CrossCell("forward", "base", "rl", "js", 0.5, 0)
    sweep.run_cell(stale, specs, records, cfg, "toy", layout)
    counts = sweep.publish_cross(layout, cells + random_cells)
    assert not (out / "samples" / f"part-{stale.name}.parquet").exists()

    con = connect(layout.root)  # the analysis warehouse finds both views
    samples = con.sql("select * from cross_samples").df()
    tokens = con.sql("select * from cross_tokens").df()
    assert counts == {"samples": len(samples), "tokens": len(tokens)} and len(samples) == 16 * 12
    assert not samples[["direction", "rule", "threshold", "seed", "prompt_id",
                        "sample_id"]].duplicated().any()
    per_response = tokens.groupby(["direction", "rule", "threshold", "seed", "prompt_id",
                                   "sample_id"]).agg(n=("position", "size"),
                                                     k=("is_switched", "sum"))
    merged = samples.set_index(per_response.index.names).join(per_response)
    assert (merged.n == merged.n_tokens).all() and (merged.k == merged.n_switched).all()
    forward_js = samples[(samples.direction == "forward") & (samples.rule == "js")]
    assert set(forward_js.groupby("threshold").switch_share.mean().round(6)) >= {0.0, 1.0}
    src = tokens[tokens.direction == "backward"]
    assert (src.source_model == np.where(src.is_switched, "base", "rl")).all()

    # a rerun with the same settings keeps every part; new settings redo it
    part = out / "samples" / f"part-{cells[1].name}.parquet"
    before = part.stat().st_mtime_ns
    # the speed knobs are not part of a cell's fingerprint
    fast = _cfg(resources=CrossResources(batch_size=3, max_parallel=1))
    sweep.run_cell(cells[1], specs, records, fast, "toy", layout)
    assert part.stat().st_mtime_ns == before
    sweep.run_cell(cells[1], specs, records, _cfg(samples_per_prompt=3), "toy", layout)
    assert part.stat().st_mtime_ns != before
    sweep.run_cell(cells[1], specs, records, cfg, "toy", layout)

    sweep.publish_cross(layout, cells + random_cells)
    metrics = budgets.write_budget_outputs(layout, CrossParams(n_bootstrap=200))
    assert json.loads(layout.metrics("cross").read_text()) == json.loads(json.dumps(metrics))
    curve = pd.read_csv(layout.plot("cross_accuracy_by_budget"))
    assert set(curve.rule) == {"js", "random"} and len(curve) == 2 * 4
    assert {"forward", "backward"} <= set(metrics)


def test_config_requires_baselines_and_known_rules():
    with pytest.raises(ValueError, match="cross_sample.rules.js"):
        from_section(CrossParams, {"cross_sample": {"rules": {"js": [0.1]}}}, "cross_sample")
    with pytest.raises(ValueError, match="unknown rule"):
        from_section(CrossParams, {"cross_sample": {"rules": {"js": [1, -1], "kl": [1]}}},
                     "cross_sample")
    with pytest.raises(ValueError, match="cross_sample.seeds"):
        from_section(CrossParams, {"cross_sample": {"seeds": [0, 0]}}, "cross_sample")


@pytest.mark.slow
def test_flow_runs_the_grid_with_matched_random(family, tmp_path):
    from prefect.testing.utilities import prefect_test_harness

    from flows.cross_sample import cross_sample

    layout, _ = family
    records = task_prompts(4, 0, 2, 4)
    pd.DataFrame([r.__dict__ for r in records]).to_parquet(tmp_path / "eval.parquet")
    config = CrossParams(n_prompts=4, samples_per_prompt=2, seeds=[0], max_new_tokens=6,
                         n_bootstrap=50, rules={"js": [1.0, 0.0015, -1.0], "entropy": [4.7]})
    with prefect_test_harness():
        out = cross_sample(config, ModelsParams(), str(tmp_path / "eval.parquet"), "toy",
                           str(layout.root))
    assert len(out["cells"]) == 2 * (3 + 1 + 1)  # js, entropy, one matched random per direction
    assert out["rows"]["samples"] == 10 * 8
    assert json.loads(layout.metrics("cross").read_text())["forward"]["accuracy_primary"] >= 0
