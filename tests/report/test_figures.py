"""Figures from small hand-made tables: captions carry the numbers computed independently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from rlvr.report import comparison_figures as C
from rlvr.report import cross_figures as X
from rlvr.report import experiments as E
from rlvr.report import figures as F


def _two_groups(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def test_js_histogram_caption_share_below_1e3():
    lo = 10.0 ** np.arange(-6, 0, 1.0)  # one bin per decade: 1e-6..1e-1
    hist = pd.DataFrame({"pair": "base__rl", "generator": "tuned", "js_lo": lo,
                         "js_hi": lo * 10, "n_positions": [5, 3, 2, 4, 1, 5]})
    fig, caption = F.js_histogram(hist)
    assert isinstance(fig, Figure)
    # bins ending at or below 1e-3: 5 + 3 + 2 of 20
    assert "base__rl/tuned 50.0% below 1e-3" in caption
    assert fig.axes[0].get_xscale() == "log"


def test_sparsity_caption_at_nearest_thresholds():
    rows = [{"pair": "base__rl", "generator": g, "threshold": t, "share_above": s}
            for g, shares in (("base", (0.5, 0.2, 0.05)), ("tuned", (0.4, 0.1, 0.01)))
            for t, s in zip((0.001, 0.01, 0.1), shares, strict=True)]
    _, caption = F.sparsity_curve(pd.DataFrame(rows))
    assert "at JS > 0.01: base__rl/base 20.0%, base__rl/tuned 10.0%" in caption
    assert "at JS > 0.1: base__rl/base 5.0%, base__rl/tuned 1.0%" in caption


def test_js_by_entropy_and_position_captions():
    ent = pd.DataFrame({"pair": "p__q", "generator": "base", "bin_index": [1, 2, 3],
                        "entropy_lo": [0.0, 0.5, 1.0], "entropy_hi": [0.5, 1.0, None],
                        "n_positions": [10, 5, 2], "mean_js": [0.001, 0.02, 0.3],
                        "share_divergent": [0.0, 0.1, 0.5]})
    _, caption = F.js_by_entropy(ent)
    assert "mean JS 0.001 in the lowest-entropy bin vs 0.300 in the highest" in caption
    norm = pd.DataFrame({"pair": "p__q", "generator": "base", "bin_index": range(5),
                         "position_lo": np.arange(5) / 5, "position_hi": np.arange(1, 6) / 5,
                         "mean_js": [0.2, 0.05, 0.01, 0.03, 0.08]})
    edges = pd.DataFrame({"pair": "p__q", "generator": "base", "anchor": ["start", "end"],
                          "token_offset": [0, 0], "mean_js": [0.3, 0.1]})
    fig, caption = F.js_by_position(norm, edges)
    assert "start 0.200 / middle 0.010 / end 0.080" in caption
    assert len(fig.axes) == 2


def test_topk_and_rank_captions():
    topk = pd.DataFrame({"pair": "a__b", "generator": "tuned", "subset": "divergent",
                         "k": [1, 2, 3], "mean_overlap": [0.25, 0.85, 0.9]})
    _, caption = C.topk_overlap(topk)
    assert "k=1 25.0%, k=2 85.0%" in caption
    shares = np.array([3, 4, 1, 2]) / 10
    rank = pd.DataFrame({"pair": "a__b", "generator": "tuned", "subset": "all",
                         "rank_bucket": [1, 2, 3, 4], "rank_label": ["1", "2", "3", ">3"],
                         "share_positions": shares})
    realloc = pd.DataFrame({"pair": ["a__b"], "generator": ["tuned"], "subset": ["all"],
                            "share_base_prob_below_low": [0.05]})
    _, caption = C.rank_histogram(rank, realloc)
    assert f"top-1 {100 * shares[0]:.1f}%, top-3 {100 * shares[:3].sum():.1f}%" in caption
    assert "p_base<low 5.0%" in caption


def test_checkpoint_evolution_caption():
    df = pd.DataFrame({"pair": ["b__rl_step_10", "b__rl_step_20", "b__rl"],
                       "rl_step": [10, 20, None], "is_final": [False, False, True],
                       "js_p50": [0.001, 0.002, 0.003], "js_p90": [0.01, 0.02, 0.03],
                       "js_p95": [0.02, 0.04, 0.05], "js_p99": [0.05, 0.12, 0.2],
                       "jaccard_with_final": [0.3, 0.7, 1.0]})
    _, caption = C.checkpoint_evolution(df)
    assert "p99 0.050 → 0.120" in caption and "Jaccard with final 0.30 → 0.70" in caption
    assert "final model p99 0.200" in caption


def test_truncation_roles_correctness_family_captions():
    trunc = pd.DataFrame({"pair": ["a__b"], "generator": ["base"], "mae": [0.0123],
                          "spearman": [0.9876]})
    assert "MAE 0.0123, ρ 0.988" in C.truncation_error(trunc)[1]
    roles = pd.DataFrame({"pair": "a__b", "generator": "base",
                          "role": ["method", "other", "format"],
                          "share_divergent": [0.6, 0.05, 0.3]})
    pr = pd.DataFrame({"pair": "a__b", "generator": "base", "threshold": [0.05, 0.1, 0.2],
                       "precision": [0.5, 0.75, 0.9], "recall": [0.9, 0.6, 0.3]})
    caption = C.role_ground_truth(roles, pr)[1]
    assert "most divergent role method (60.0%)" in caption and "P=0.75 R=0.60" in caption
    corr = pd.DataFrame({"pair": "a__b", "generator": "tuned", "is_correct": [True, False],
                         "mean_js": [0.01, 0.03], "share_divergent": [0.04, 0.12]})
    assert "4.0% correct vs 12.0% incorrect" in C.correct_vs_incorrect(corr)[1]
    fam = pd.DataFrame({"tuned_kind": ["rl", "sft"], "generator": "tuned",
                        "share_above_001": [0.1, 0.5], "share_divergent": [0.02, 0.2],
                        "top_decile_js_mass": [0.9, 0.5], "mean_js_first_bin": [0.1, 0.1],
                        "mean_js_middle_bins": [0.01, 0.1], "mean_js_last_bin": [0.02, 0.1]})
    caption = C.tuned_comparison(fam)[1]
    assert "rl/tuned 10.0% above 0.01, 2.0% divergent" in caption
    assert "sft/tuned 50.0% above 0.01, 20.0% divergent" in caption


def test_cross_budget_caption_at_matched_budgets():
    rows = []
    for direction, (acc0, acc1) in (("forward", (0.2, 0.6)), ("backward", (0.6, 0.2))):
        for rule, target, share, acc in (("none", 0.0, 0.0, acc0), ("all", 1.0, 1.0, acc1),
                                         ("js", 0.05, 0.052, 0.5), ("random", 0.05, 0.049, 0.25),
                                         ("js", 0.2, 0.21, 0.55), ("random", 0.2, 0.2, 0.3)):
            rows.append({"direction": direction, "rule": rule, "target_budget": target,
                         "budget_share": share, "accuracy": acc, "accuracy_low": acc - 0.05,
                         "accuracy_high": acc + 0.05})
    fig, caption = E.cross_budget(pd.DataFrame(rows))
    # budgets <= 10% only, each rule with its achieved budget
    assert "forward 5.0%: js 50.0% (at 5.2%), random 25.0% (at 4.9%)" in caption
    assert "20.0%:" not in caption
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    # the endpoints are horizontal reference lines, not points of a rule's curve
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "primary alone 20.0%" in labels and "intervention alone 60.0%" in labels


def test_cross_versus_random_counts_intervals_excluding_zero():
    df = pd.DataFrame({
        "direction": ["forward"] * 3 + ["backward"] * 2,
        "target_budget": [0.02, 0.1, 0.4, 0.02, 0.1],
        "rule": ["js"] * 5,
        "diff": [0.1, 0.02, 0.3, -0.2, 0.0],
        "diff_low": [0.05, -0.03, 0.2, -0.3, -0.1],
        "diff_high": [0.15, 0.07, 0.4, -0.1, 0.1]})
    fig, caption = E.cross_versus_random(df)
    assert "forward: 1 of 2 (rule, budget <= 10%) intervals exclude 0" in caption  # 40% not
    assert "backward: 1 of 2" in caption and len(fig.axes) == 2


def test_dapo_diagnostics_panels_and_caption():
    log = pd.DataFrame({"step": [1, 2, 3], "clip_frac_low": [0.01, 0.02, 0.03],
                        "clip_frac_high": [0.0, 0.01, 0.02], "ratio_std": [0.1, 0.2, 0.3],
                        "k3_old": [0.001, 0.002, 0.003], "k3_old_later": [0.002, 0.003, 0.004],
                        "kl_base": [0.01, 0.02, 0.03]})
    fig, caption = E.dapo_diagnostics({"rl": log})
    assert len(fig.axes) == len(E.DAPO_PANELS)
    assert "rl: clip low 2.0%, high 1.0%, k3 on non-first updates 0.003" in caption
    # a log without KL to base (no reference model) still draws the other panels
    fig, _ = E.dapo_diagnostics({"a": log.drop(columns="kl_base"), "b": log})
    assert len(fig.axes[3].lines) == 1
    with pytest.raises(F.SchemaError, match="k3_old_later"):
        E.dapo_diagnostics({"old": log.drop(columns="k3_old_later")})


def test_weighted_summary_and_curves_captions():
    acc = {"baseline": [0.40, 0.42, 0.44], "k3_old_high": [0.45, 0.47, 0.46]}
    rows = [{"variant": v, "mean": np.mean(a), "std": np.std(a, ddof=1), "n_seeds": 3,
             "diff": np.mean(a) - np.mean(acc["baseline"]), "diff_lo": 0.01, "diff_hi": 0.05,
             "distinguishable": v != "baseline"} for v, a in acc.items()]
    caption = E.weighted_summary(pd.DataFrame(rows[::-1]))[1]
    assert caption.index("baseline 42.0 ± 2.0 (n=3)") < caption.index("k3_old_high")
    assert caption.endswith("k3_old_high 46.0 ± 1.0 (n=3), Δ +4.0 [+1.0, +5.0].")
    rows[1]["distinguishable"] = False
    assert "(within seed noise)" in E.weighted_summary(pd.DataFrame(rows))[1]
    training = pd.DataFrame([{"variant": v, "seed": s, "step": step, "metric": "accuracy",
                              "value": a[s] * step / 10} for v, a in acc.items()
                             for s in range(3) for step in (0, 5, 10)])
    caption = E.weighted_curves(training, "accuracy")[1]
    assert "baseline 0.420 at step 10" in caption and "k3_old_high 0.460 at step 10" in caption


def test_training_curves_caption():
    curves = {"pretrain loss": pd.DataFrame({"step": [0, 50, 100], "loss": [4.0, 1.5, 0.75]}),
              "RL train reward": pd.DataFrame({"step": [1, 2], "reward_mean": [0.25, 0.5]})}
    fig, caption = E.training_curves(curves)
    assert "pretrain loss loss 4 → 0.75 over 100 steps" in caption
    assert "RL train reward reward_mean 0.25 → 0.5 over 2 steps" in caption
    assert len(fig.axes) == 2


def test_model_accuracies_and_schema_error():
    df = pd.DataFrame({"model": ["base", "rl"], "accuracy": [0.125, 0.5]})
    assert E.model_accuracies(df)[1] == "Held-out accuracy per model: base 12.5%, rl 50.0%."
    with pytest.raises(F.SchemaError, match="missing columns"):
        F.sparsity_curve(pd.DataFrame({"pair": ["x"]}))


def test_measured_decisiveness_draws_one_panel_per_generator_at_the_cut():
    rows = [{"generator": g, "signal": s, "pivot_cut": cut, "flag_share": f,
             "recall": min(1.0, f * k), "precision": 0.2, "auc": auc, "base_rate": 0.03}
            for g in ("base", "tuned") for s, k, auc in (("js", 4, 0.91), ("abs_delta", 8, 0.95))
            for cut in (0.1, 0.2) for f in (0.05, 0.1, 0.2)]
    fig, caption = C.measured_decisiveness(pd.DataFrame(rows), 0.2)
    assert len(fig.axes) == 2 and all(len(ax.lines) == 2 for ax in fig.axes)
    # the lines are the rows at the cut only, in percent of positions flagged
    assert sorted(fig.axes[0].lines[1].get_xdata()) == [5.0, 10.0, 20.0]
    assert "base: AUC abs_delta 0.95, js 0.91" in caption and "≥ 0.2" in caption
    with_ci = pd.DataFrame(rows).assign(auc_low=0.8, auc_high=0.97)
    assert "js 0.91 [0.80, 0.97]" in C.measured_decisiveness(with_ci, 0.2)[1]
    with pytest.raises(ValueError, match="no rows at pivot cut 0.3"):
        C.measured_decisiveness(pd.DataFrame(rows), 0.3)
    with pytest.raises(F.SchemaError):
        C.measured_decisiveness(pd.DataFrame(rows).drop(columns="auc"), 0.2)


def test_lorenz_and_failure_captions():
    curve = pd.DataFrame([{"pair": p, "generator": g, "population_share": x, "mass_share": y}
                          for p in ("base__rl", "base__sft") for g in ("base", "tuned")
                          for x, y in ((0.0, 0.0), (0.5, 0.1), (1.0, 1.0))])
    summary = pd.DataFrame([{"pair": "base__rl", "generator": "tuned", "gini": 0.9123,
                             "mass_share": q, "share_positions": s}
                            for q, s in ((0.5, 0.04), (0.9, 0.2))])
    fig, caption = F.lorenz_curves(curve, summary)
    assert "base__rl/tuned Gini 0.912, 50% of the mass in 4.0% of positions" in caption
    assert len(fig.axes) == 2
    failure = pd.DataFrame({"pair": "base__rl", "generator": "tuned",
                            "summary": ["max_js", "mean_js", "mean_js_first"],
                            "auroc": [0.61, 0.7, 0.5], "auroc_low": [0.55, 0.62, 0.41],
                            "auroc_high": [0.67, 0.78, 0.59]})
    _, caption = F.failure_auroc(failure)
    assert "base__rl/tuned best mean_js 0.70 [0.62, 0.78]" in caption


def _paired(rows):
    return pd.DataFrame([{"comparison": c, "arm": a, "rule": r, "target_budget": b,
                          "budget_cell": b, "diff": d, "diff_low": lo, "diff_high": hi}
                         for c, a, r, b, d, lo, hi in rows])


def test_extrapolation_and_shortcut_captions():
    paired = _paired([
        ("minus_tuned", "extrapolate-a0.1", "gap_neg", 0.05, 0.03, 0.01, 0.05),
        ("minus_tuned", "extrapolate-a0.1", "js", 0.05, -0.01, -0.04, 0.02),
        ("minus_tuned", "extrapolate-a0.1", "all", 1.0, -0.05, -0.09, -0.01),
        ("minus_tuned", "extrapolate-a0.5", "js", 0.2, 0.0, -0.03, 0.03),
        ("minus_random", "forward", "js", 0.05, 0.2, 0.1, 0.3),  # not drawn here
        ("minus_exact", "forward-top50", "js", 0.05, -0.02, -0.06, 0.02),
    ])
    fig, caption = X.extrapolation(paired)
    assert len(fig.axes) == 2
    assert ("extrapolate-a0.1: 1 of 2 gated cells above 0, best gap_neg at 5% +3.0 [+1.0, +5.0], "
            "every position -5.0 [-9.0, -1.0]") in caption
    overlap = pd.DataFrame([{"arm": a, "target_budget": b, "rule": r, "jaccard_with_js": j}
                            for a in ("forward", "backward") for r, j in (("kl_sym_topk", 0.6),
                                                                          ("gap_neg", 0.3))
                            for b in (0.05, 0.1)])
    fig, caption = X.shortcuts(overlap, paired)
    assert "forward Jaccard of the companion's gate with JS 0.60 at 5%, 0.60 at 10%" in caption
    assert "forward-top50 js at 5% -2.0 [-6.0, +2.0]" in caption
    with pytest.raises(F.SchemaError, match="no minus_tuned"):
        X.extrapolation(paired[paired["comparison"] != "minus_tuned"])
