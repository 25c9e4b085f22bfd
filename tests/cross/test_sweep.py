"""The cross-sampling sweep: cells, rule mapping, parts on disk, publishing, the flow."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from rlvr.config import from_section
from rlvr.cross import budgets, calibration, sweep
from rlvr.cross.sweep import ArmParams, CrossCell, CrossParams, CrossResources
from rlvr.layout import Layout
from rlvr.models.loading import save_model
from rlvr.models.specs import ModelsParams
from rlvr.testbed.prompts import task_prompts
from rlvr.warehouse.views import connect


def _cell(direction, rule, threshold=0.1, target=0.05, round_=1, seed=0, alpha=0.0, top_k=0):
    primary, intervention = sweep.direction_models(direction, "base", "rl")
    return CrossCell(direction, primary, intervention, rule, threshold, seed, target, round_,
                     alpha=alpha, top_k=top_k)


def test_cells_name_and_map_rules_to_decoder_signals():
    cases = [  # (direction, rule, decoder rule, decoder threshold)
        ("forward", "js", "js", 0.1),
        ("forward", "entropy", "entropy_primary", 0.1),  # forward: the base model is primary
        ("backward", "entropy", "entropy_intervention", 0.1),  # backward: base intervenes
        ("backward", "entropy_primary", "entropy_primary", 0.1),  # the tuned model's entropy
        ("backward", "delta", "delta", 0.1),
        ("forward", "random", "random", 0.1),
        ("forward", "none", "js", 1.0),  # no JS exceeds 1 > ln 2
        ("backward", "all", "js", -1.0),  # every JS exceeds -1
        # Δ = log pi_tuned - log pi_base; the decoder's gap is log pi_int - log pi_prim
        ("forward", "gap_neg", "gap_sampled_neg", 0.1),  # forward: gap = Δ, so -gap > t
        ("backward", "gap_neg", "gap_sampled_pos", 0.1),  # tuned primary: gap = -Δ
        ("extrapolate", "gap_neg", "gap_sampled_pos", 0.1),
        ("forward", "gap_top_pos", "gap_top_pos", 0.1),
        ("backward", "gap_top_pos", "gap_top_neg", 0.1),
        ("forward", "kl_base_tuned", "kl_pi", 0.1),  # KL(base || tuned): base is primary
        ("backward", "kl_base_tuned", "kl_ip", 0.1),
        ("extrapolate", "kl_tuned_base", "kl_pi", 0.1),
        ("forward", "kl_sym_topk", "kl_sym_topk", 0.1),
        ("backward", "early", "early", 0.1),
    ]
    for direction, rule, name, threshold in cases:
        got = _cell(direction, rule).switch_rule()
        assert (got.name, got.threshold) == (name, threshold), (direction, rule)
    assert _cell("forward", "js", target=0.05, round_=2, seed=1).name == "forward-js-b5-r2-s1"
    # what a switched step draws from: tuned (forward), base (backward), the blends
    mixes = [(_cell("forward", "js"), 1.0, 0), (_cell("backward", "js"), 1.0, 0),
             (_cell("extrapolate", "js", alpha=0.1), -0.1, 0),
             (_cell("forward", "js", alpha=0.1), 1.1, 0),
             (_cell("forward", "js", top_k=50), 1.0, 50)]
    for cell, weight, top_k in mixes:
        mix = cell.mixing(7)
        assert (mix.weight_intervention, mix.top_k, mix.gate_k) == pytest.approx((weight, top_k, 7))
    assert _cell("extrapolate", "js", alpha=0.1, top_k=50).arm == "extrapolate-a0.1-top50"
    assert (_cell("extrapolate", "js", alpha=0.1).primary,
            _cell("extrapolate", "js", alpha=0.1).intervention) == ("rl", "base")
    cfg = CrossParams(rules=["js", "random"], budgets=[0.1], arms=[
        ArmParams("forward", rules=["gap_neg", "js"], budgets=[0.1, 0.2]),
        ArmParams("extrapolate", alpha=0.1, rules=["js"], budgets=[0.1])])
    grid = {a.name: a.points for a in cfg.grid()}
    assert grid == {"forward": (("js", 0.1), ("random", 0.1), ("gap_neg", 0.1), ("gap_neg", 0.2),
                                ("js", 0.2)),  # merged: the union, in order
                    "backward": (("js", 0.1), ("random", 0.1)),
                    "extrapolate-a0.1": (("js", 0.1),)}
    ends = sweep.endpoint_cells(cfg.grid(), "base", "rl", [0, 1])
    assert sorted(c.name for c in ends) == sorted(
        f"{d}-{r}-s{s}" for d in ("forward", "backward", "extrapolate-a0.1")
        for r in ("none", "all") for s in (0, 1))
    assert {(c.rule, c.target_budget) for c in ends} == {("none", 0.0), ("all", 1.0)}
    backward = [c for c in ends if c.direction == "backward"]
    assert {(c.primary, c.intervention) for c in backward} == {("rl", "base")}


@pytest.fixture(scope="module")
def family(tmp_path_factory, tiny_pair, tokenizer):
    """A layout whose models directory holds the tiny pair, and the pair's resolved specs."""
    layout = Layout(tmp_path_factory.mktemp("data"))
    for name, model in zip(("base", "rl"), tiny_pair, strict=True):
        save_model(model, tokenizer, layout.model_dir(name))
    return layout, {n: ModelsParams().spec(n, layout) for n in ("base", "rl")}


def _cfg(**kw) -> CrossParams:
    return CrossParams(**{"max_new_tokens": 8, "samples_per_prompt": 2, "n_bootstrap": 200,
                          "rules": ["js", "random"], "budgets": [0.2], "arms": [], **kw})


# an extrapolation arm and the companion's shortcut at a small K (the tiny vocabulary is 113)
EXTRA_ARMS = [ArmParams("extrapolate", alpha=0.5, rules=["js", "random"], budgets=[0.2]),
              ArmParams("forward", top_k=3, rules=["js", "kl_sym_topk"], budgets=[0.2])]


def test_cells_on_disk_publish_and_summarize(family):
    layout, specs = family
    records = task_prompts(6, 0, 2, 4)
    cfg = _cfg(arms=EXTRA_ARMS, gate_k=3)
    ends = sweep.endpoint_cells(cfg.grid(), "base", "rl", cfg.seeds)
    summaries = [sweep.run_cell(c, specs, records, cfg, "toy", layout) for c in ends]
    assert all(s["n_responses"] == 12 for s in summaries)
    assert {s["budget"] for s in summaries} == {0.0, 1.0}
    pilot = [c for c in ends if c.rule == "none"]
    cells = calibration.plan_round(cfg, layout, 1, pilot, [])
    for c in cells:
        sweep.run_cell(c, specs, records, cfg, "toy", layout)
    stale = _cell("forward", "js", 0.5, 0.4)
    sweep.run_cell(stale, specs, records, cfg, "toy", layout)
    final = calibration.write_calibration(layout, cells, cfg.budget_tolerance)
    counts = sweep.publish_cross(layout, ends + final)
    published = layout.cross_dir / "samples"
    assert not (published / f"part-{stale.name}.parquet").exists()
    assert os.path.exists(sweep.cell_path(layout, stale, "samples"))  # the work part stays
    part = published / f"part-{cells[0].name}.parquet"
    assert os.path.samefile(part, sweep.cell_path(layout, cells[0], "samples"))  # a link

    con = connect(layout.root)  # the analysis warehouse finds both views
    samples = con.sql("select * from cross_samples").df()
    tokens = con.sql("select * from cross_tokens").df()
    n_cells = len(ends) + len(final)
    assert counts == {"samples": len(samples), "tokens": len(tokens)}
    assert len(samples) == n_cells * 12
    key = ["arm", "rule", "target_budget", "seed", "prompt_id", "sample_id"]
    assert not samples[key].duplicated().any()
    per_response = tokens.groupby(key).agg(n=("position", "size"), k=("is_switched", "sum"))
    merged = samples.set_index(key).join(per_response)
    assert (merged.n == merged.n_tokens).all() and (merged.k == merged.n_switched).all()
    src = tokens[tokens.direction == "backward"]
    assert (src.source_model == np.where(src.is_switched, "base", "rl")).all()
    # every seed of a group shares the group's threshold
    assert (samples.groupby(["arm", "rule", "target_budget"]).threshold.nunique() == 1).all()
    # the top-K arm records what the shortcut changed at its switched steps, the others nothing
    topk = tokens.arm == "forward-top3"
    assert (tokens.mix_tv.notna() == (topk & tokens.is_switched)).all()

    # a rerun with the same settings keeps every part; new settings redo it
    work = sweep.cell_path(layout, cells[1], "samples")
    before = os.stat(work).st_mtime_ns
    # the speed knobs are not part of a cell's fingerprint
    fast = _cfg(arms=EXTRA_ARMS, gate_k=3,
                resources=CrossResources(batch_size=3, max_parallel=1))
    sweep.run_cell(cells[1], specs, records, fast, "toy", layout)
    assert os.stat(work).st_mtime_ns == before
    sweep.run_cell(cells[1], specs, records, _cfg(arms=EXTRA_ARMS, gate_k=3,
                                                  samples_per_prompt=3), "toy", layout)
    assert os.stat(work).st_mtime_ns != before
    sweep.run_cell(cells[1], specs, records, cfg, "toy", layout)

    sweep.publish_cross(layout, ends + final)
    metrics = budgets.write_budget_outputs(layout, cfg)
    assert json.loads(layout.metrics("cross").read_text()) == json.loads(json.dumps(metrics))
    curve = pd.read_csv(layout.plot("cross_accuracy_by_budget"))
    assert set(curve.rule) == {"js", "random", "none", "all", "kl_sym_topk"}
    assert len(curve) == 3 * 4 + 4
    versus = pd.read_csv(layout.plot("cross_rule_vs_random"))
    assert set(zip(versus.arm, versus.rule, strict=True)) == {
        ("forward", "js"), ("backward", "js"), ("extrapolate-a0.5", "js")}
    point = metrics["forward"]["budgets"]["0.2"]["js"]
    assert point["minus_random_low"] <= point["minus_random"] <= point["minus_random_high"]
    extra = metrics["extrapolate-a0.5"]
    assert (extra["direction"], extra["alpha"]) == ("extrapolate", 0.5)
    assert "half_gain" not in extra and "minus_tuned" in extra["all"]
    assert extra["budgets"]["0.2"]["js"]["minus_tuned"] == pytest.approx(
        extra["budgets"]["0.2"]["js"]["minus_primary"])  # its primary is the tuned model
    short = metrics["forward-top3"]
    assert {"minus_exact", "minus_primary"} <= set(short["budgets"]["0.2"]["kl_sym_topk"])
    assert "minus_exact" in short["all"]
    cuts = metrics["shortcuts"]
    assert set(cuts["gate_overlap"]) == {"forward", "backward"}
    overlap = cuts["gate_overlap"]["forward"]["0.2"]
    assert 0 <= overlap["kl_sym_topk"]["jaccard_with_js"] <= 1
    assert overlap["kl_sym_topk"]["share"] == pytest.approx(0.2, abs=0.1)  # calibrated
    assert set(cuts["fixed_thresholds"]["forward"]) == {"gap_neg>0.3", "gap_neg>0.35",
                                                        "gap_neg>0.4"}
    mixing = cuts["mixing"]["forward-top3"]["0.2"]
    assert set(mixing) == {"js", "kl_sym_topk"}
    assert 0 < mixing["js"]["mean_tv"] < 1 and mixing["js"]["n_switched"] > 0
    published = connect(layout.root).sql("select * from cross_tokens").df()
    top = published[(published.arm == "forward-top3") & (published.rule == "js")]
    assert mixing["js"]["mean_tv"] == pytest.approx(top.mix_tv.dropna().mean(), rel=1e-6)
    assert mixing["js"]["share_draw_differs"] == pytest.approx(
        top.mix_differs.dropna().astype(float).mean())
    # the overlap, recomputed from the forward pilot's rows: each gate's top share at the
    # budget (its round-1 threshold), gap_neg read as -(log p_rl - log p_base) of the candidate
    pilot = published[(published.arm == "forward") & (published.rule == "none")]
    responses = (pilot.seed.astype(str) + "/" + pilot.prompt_id + "/"
                 + pilot.sample_id.astype(str)).to_numpy()
    picks = {}
    for rule, values in (("js", pilot.js), ("gap_neg", -pilot.gap_sampled),
                         ("kl_base_tuned", pilot.kl_primary_intervention)):
        values = values.to_numpy(dtype=np.float64)
        picks[rule] = values > calibration.threshold_for_budget(values, responses, 0.2)
    for rule in ("gap_neg", "kl_base_tuned"):
        both, either = (picks[rule] & picks["js"]).sum(), (picks[rule] | picks["js"]).sum()
        assert overlap[rule]["jaccard_with_js"] == pytest.approx(both / either)


def test_config_requires_random_and_known_rules():
    cases = [
        ({"rules": ["js", "entropy"]}, "cross_sample.rules"),  # no random control
        ({"rules": ["js", "kl", "random"]}, "unknown rule"),
        ({"directions": ["extrapolate"]}, "cross_sample.directions"),  # an arm, with alpha
        ({"arms": [{"direction": "extrapolate"}]}, r"cross_sample.arms\[0\].alpha"),
        ({"arms": [{"direction": "backward", "alpha": 0.1}]}, r"arms\[0\].alpha"),
        ({"arms": [{"rules": ["js", "js"]}]}, r"arms\[0\].rules"),
        ({"arms": [{"budgets": [1.0]}]}, r"arms\[0\].budgets"),
        ({"gate_k": 0}, "cross_sample.gate_k"),
        ({"seeds": [0, 0]}, "cross_sample.seeds"),
        ({"budgets": [0.0, 0.1]}, "cross_sample.budgets"),
        ({"budgets": [0.1, 0.1]}, "cross_sample.budgets"),
        ({"random_match": "per_response", "rules": ["entropy", "random"]},
         "cross_sample.random_match"),
        ({"random_match": "pooled"}, "cross_sample.random_match"),
        ({"budget_tolerance": 0.0}, "cross_sample.budget_tolerance"),
    ]
    for raw, match in cases:
        with pytest.raises(ValueError, match=match):
            from_section(CrossParams, {"cross_sample": raw}, "cross_sample")


@pytest.mark.slow
def test_flow_calibrates_publishes_and_summarizes(family, tmp_path):
    from prefect.testing.utilities import prefect_test_harness

    from flows.cross_sample import cross_sample

    layout, _ = family
    records = task_prompts(4, 0, 2, 4)
    pd.DataFrame([r.__dict__ for r in records]).to_parquet(tmp_path / "eval.parquet")
    config = CrossParams(n_prompts=4, samples_per_prompt=2, seeds=[0], max_new_tokens=6,
                         n_bootstrap=50, rules=["js", "entropy", "random"], budgets=[0.3],
                         random_match="per_response", arms=[
                             ArmParams("extrapolate", alpha=0.3, rules=["gap_neg"],
                                       budgets=[0.3])])
    with prefect_test_harness():
        out = cross_sample(config, ModelsParams(), str(tmp_path / "eval.parquet"), "toy",
                           str(layout.root))
    # per direction: 2 endpoints, js and entropy in one or two rounds, one matched random;
    # extrapolation: 2 endpoints, gap_neg in one or two rounds, no random (it lists none)
    assert 2 * 5 + 3 <= len(out["cells"]) <= 2 * 7 + 4
    assert out["rows"]["samples"] == (2 * 5 + 3) * 8
    metrics = json.loads(layout.metrics("cross").read_text())
    assert set(metrics["forward"]["budgets"]["0.3"]) == {"js", "entropy", "random"}
    assert set(metrics["extrapolate-a0.3"]["budgets"]["0.3"]) == {"gap_neg"}
