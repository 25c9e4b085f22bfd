"""The study-vs-this-run table: every rule's yes / partly / no on planted metrics, n/a when a
stage's metrics are missing."""

from __future__ import annotations

import copy

import pytest

from rlvr.report.findings import FINDINGS, findings_metrics, study_findings


def _rl(**overrides):
    stats = {  # a run that reproduces every analysis finding
        "share_js_above_0.01": 0.12, "share_js_above_0.1": 0.05,
        "other_share_high_entropy": 0.15, "divergent_share_high_entropy": 0.5,
        "mean_js_first_bin": 0.2, "mean_js_middle_bins": 0.01, "mean_js_last_bin": 0.05,
        "divergent_share_top1_is_base_top1": 0.3, "divergent_share_top1_in_base_top3": 0.9,
        "divergent_share_base_prob_below_low": 0.05, "identity_top5_share_divergent": 0.4,
        "top_decile_js_mass": 0.9, "js_gini": 0.95, "share_positions_holding_0.5_js": 0.05,
        "share_positions_holding_0.8_js": 0.12, "share_positions_holding_0.9_js": 0.2,
        "failure_auroc_max_js": 0.65, "failure_auroc_low_max_js": 0.55,
        "failure_auroc_high_max_js": 0.75, "failure_auroc_mean_js": 0.52,
        "failure_auroc_low_mean_js": 0.45, "failure_auroc_high_mean_js": 0.6,
        "failure_auroc_mean_js_first": 0.48, "failure_auroc_low_mean_js_first": 0.4,
        "failure_auroc_high_mean_js_first": 0.56,
    }
    return stats | overrides


def _budget(js, random, diff, low, high):
    return {"js": {"achieved_budget": 0.05, "accuracy": js, "minus_random": diff,
                   "minus_random_low": low, "minus_random_high": high},
            "random": {"achieved_budget": 0.05, "accuracy": random}}


GOOD = {
    "analysis": {
        "pairs": {"base__rl": {"tuned": _rl()},
                  "base__sft": {"tuned": _rl(**{"share_js_above_0.1": 0.2,
                                                "top_decile_js_mass": 0.5})}},
        "checkpoints": {
            "base__rl_step_25": {"rl_step": 25, "js_p50": 0.0, "js_p95": 0.1, "js_p99": 0.2,
                                 "jaccard_with_final": 0.2},
            "base__rl_step_50": {"rl_step": 50, "js_p50": 0.01, "js_p95": 0.3, "js_p99": 0.5,
                                 "jaccard_with_final": 1.0},
            "base__rl": {"rl_step": None, "js_p50": 0.01, "js_p95": 0.3, "js_p99": 0.5,
                         "jaccard_with_final": 1.0},
        },
    },
    "cross": {
        "forward": {"accuracy_primary": 0.1, "accuracy_intervention": 0.5, "half_target": 0.3,
                    "budgets": {"0.05": _budget(0.35, 0.15, 0.2, 0.1, 0.3),
                                "0.1": {"gap_neg": {"minus_random": 0.2, "minus_random_low": 0.1,
                                                    "minus_random_high": 0.3}},
                                "0.2": _budget(0.5, 0.2, 0.3, 0.2, 0.4)},
                    "half_gain": {r: {"budget_share": b} for r, b in (
                        ("gap_neg", 0.04), ("kl_tuned_base", 0.14), ("kl_base_tuned", 0.2),
                        ("random", 0.19))}},
        "extrapolate-a0.1": {
            "direction": "extrapolate", "alpha": 0.1, "top_k": 0, "accuracy_primary": 0.5,
            "all": {"minus_tuned": -0.01, "minus_tuned_low": -0.05, "minus_tuned_high": 0.03},
            "budgets": {"0.05": {"gap_neg": {"minus_tuned": 0.03, "minus_tuned_low": 0.01,
                                             "minus_tuned_high": 0.05}}}},
        "forward-top50": {
            "direction": "forward", "alpha": 0.0, "top_k": 50,
            "budgets": {"0.05": {"js": {"minus_exact": 0.0, "minus_exact_low": -0.05,
                                        "minus_exact_high": 0.05}}}},
        "shortcuts": {"gate_overlap": {"forward": {
            "0.05": {"kl_sym_topk": {"jaccard_with_js": 0.7, "share": 0.05}},
            "0.2": {"kl_sym_topk": {"jaccard_with_js": 0.3, "share": 0.2}}}}},  # > 10%: ignored
        "backward": {"accuracy_primary": 0.5, "accuracy_intervention": 0.1, "half_target": 0.3,
                     "budgets": {"0.05": _budget(0.2, 0.45, -0.25, -0.35, -0.15)}},
    },
    "decisive": {"generators": {"tuned": {
        "share_pivotal": 0.03, "pivot_cut": 0.2, "flag_share": 0.1, "js_auc": 0.85,
        "js_recall": 0.6, "abs_delta_auc": 0.9, "entropy_base_auc": 0.8}}},
    "weighted": {
        "power": {"n_seeds": 8, "mde_paired": 0.02, "study_effect": 0.025,
                  "seeds_for_study_effect": 6},
        "baseline": {"accuracy_mean": 0.5, "divergence": "none", "alpha": 0.0},
        "k3_old_high": {"divergence": "k3_old", "alpha": 30.0, "normalize": False,
                        "diff": 0.03, "paired_ci_low": 0.01, "paired_ci_high": 0.05},
        "k3_old_low": {"divergence": "k3_old", "alpha": -30.0, "normalize": False,
                       "diff": 0.025, "paired_ci_low": 0.005, "paired_ci_high": 0.045},
        "k3_old_high_norm": {"divergence": "k3_old", "alpha": 30.0, "normalize": True,
                             "diff": -0.05, "paired_ci_low": -0.07, "paired_ci_high": -0.03},
    },
}


def _with(path: str, value):
    """GOOD with one nested value replaced (dotted path; keys may contain dots via '|')."""
    metrics = copy.deepcopy(GOOD)
    *parents, leaf = [k.replace("|", ".") for k in path.split("/")]
    node = metrics
    for key in parents:
        node = node[key]
    node[leaf] = value
    return metrics


def _verdicts(metrics) -> dict[str, str]:
    return {r.key: r.reproduces for r in study_findings(metrics)}


def test_every_finding_reproduces_on_planted_metrics():
    got = _verdicts(GOOD)
    assert got == {key: "yes" for key, *_ in FINDINGS}
    rows = {r.key: r for r in study_findings(GOOD)}
    assert "js − random +20.0 [+10.0, +30.0]" in rows["cross_forward"].this_run
    assert "5%" in rows["cross_forward"].this_run and "20%" not in rows["cross_forward"].this_run
    assert "detectable effect +2.0 points; 6 paired seeds would detect +2.5 points" in \
        rows["weighted"].this_run
    assert "k3_old_high_norm" not in rows["weighted"].this_run  # the study's unnormalised boosts
    assert "Gini 0.950; 50% of JS mass in 5.0% of positions" in rows["concentration"].this_run
    assert "max 0.65 [0.55, 0.75]" in rows["failure"].this_run
    assert "gap_neg 4.0%, kl_tuned_base 14.0%" in rows["signed_gap"].this_run
    assert "best gap_neg at 5% +3.0 [+1.0, +5.0], every position -1.0" in rows[
        "extrapolation"].this_run
    assert "Jaccard of the top-K ½(KL+RKL) gate with JS 0.70 at 5%;" in rows[
        "shortcuts"].this_run


RL = "analysis/pairs/base__rl/tuned"
CASES = [  # (metric path, value, finding, verdict)
    (f"{RL}/share_js_above_0|01", 0.3, "sparsity", "partly"),  # most near zero, not >83%
    (f"{RL}/share_js_above_0|01", 0.6, "sparsity", "no"),
    (f"{RL}/other_share_high_entropy", 0.3, "entropy", "partly"),
    (f"{RL}/divergent_share_high_entropy", 0.95, "entropy", "partly"),  # only high entropy
    (f"{RL}/mean_js_last_bin", 0.0, "position", "partly"),  # no rise at the end
    (f"{RL}/mean_js_first_bin", 0.0, "position", "partly"),
    (f"{RL}/divergent_share_base_prob_below_low", 0.2, "reallocation", "partly"),
    (f"{RL}/identity_top5_share_divergent", 0.07, "token_identity", "partly"),
    (f"{RL}/identity_top5_share_divergent", 0.04, "token_identity", "no"),
    ("analysis/checkpoints/base__rl_step_50/jaccard_with_final", 0.1, "evolution", "partly"),
    ("analysis/pairs/base__sft/tuned/share_js_above_0|1", 0.01, "sft_control", "partly"),
    ("cross/forward/budgets/0|05", _budget(0.35, 0.3, 0.05, -0.05, 0.15), "cross_forward",
     "partly"),  # recovers half the gain, but not distinguishable from random
    ("cross/forward/budgets/0|05", _budget(0.2, 0.3, -0.1, -0.2, -0.05), "cross_forward", "no"),
    ("cross/backward/budgets/0|05", _budget(0.4, 0.45, -0.05, -0.15, 0.05), "cross_backward",
     "no"),
    ("weighted/k3_old_low/paired_ci_low", -0.01, "weighted", "partly"),
    ("decisive/generators/tuned/share_pivotal", 0.3, "critical", "partly"),  # not a few
    (f"{RL}/js_gini", 0.7, "concentration", "partly"),
    (f"{RL}/share_positions_holding_0|5_js", 0.2, "concentration", "partly"),
    (f"{RL}/failure_auroc_low_max_js", 0.45, "failure", "partly"),  # a point above 0.5 only
    (RL, _rl(failure_auroc_max_js=0.5, failure_auroc_low_max_js=0.4,
             failure_auroc_mean_js=0.45), "failure", "no"),
    ("cross/forward/half_gain/gap_neg/budget_share", 0.3, "signed_gap", "partly"),
    ("cross/forward/budgets/0|1/gap_neg/minus_random_low", -0.1, "signed_gap", "partly"),
    ("cross/extrapolate-a0|1/budgets/0|05/gap_neg/minus_tuned_low", -0.01, "extrapolation",
     "partly"),  # better, but not distinguishable
    ("cross/extrapolate-a0|1/budgets/0|05/gap_neg", {
        "minus_tuned": -0.02, "minus_tuned_low": -0.05, "minus_tuned_high": 0.01},
     "extrapolation", "no"),
    ("cross/forward-top50/budgets/0|05/js/minus_exact_high", -0.01, "shortcuts", "partly"),
    ("cross/shortcuts/gate_overlap/forward/0|05/kl_sym_topk/jaccard_with_js", 0.2, "shortcuts",
     "partly"),
    ("decisive/generators/tuned/js_auc", 0.6, "critical", "partly"),  # JS misses them
]


@pytest.mark.parametrize("path,value,key,expected", CASES)
def test_rules_give_partly_and_no(path, value, key, expected):
    got = _verdicts(_with(path, value))
    assert got[key] == expected
    assert all(v == "yes" for k, v in got.items() if k != key)  # no other finding moved


def test_missing_metrics_read_not_applicable():
    got = {r.key: r for r in study_findings({"analysis": GOOD["analysis"]})}
    assert got["cross_forward"].reproduces == "n/a" and "no cross metrics" in \
        got["cross_forward"].this_run
    assert got["weighted"].reproduces == "n/a" and got["sparsity"].reproduces == "yes"
    assert got["critical"].reproduces == "n/a"
    assert "no decisive metrics" in got["critical"].this_run
    no_small = _with("cross/forward/budgets", {"0.2": GOOD["cross"]["forward"]["budgets"]["0.2"]})
    assert _verdicts(no_small)["cross_forward"] == "n/a"  # no budget <= 10% measured
    # all responses right (or all wrong): no AUROC, no Gini: n/a, not a crash
    undefined = _rl(js_gini=None, **{f"failure_auroc{k}_{s}": None for k in ("", "_low", "_high")
                                     for s in ("max_js", "mean_js", "mean_js_first")})
    got = _verdicts(_with(RL, undefined))
    assert got["failure"] == "n/a" and got["concentration"] == "n/a"
    metrics = findings_metrics(study_findings(GOOD))
    assert set(metrics) == {key for key, *_ in FINDINGS}
    assert set(metrics["sparsity"]) == {"reproduces", "this_run", "rule"}


def test_no_pivotal_position_reads_no_only_when_its_bound_rules_out_a_few_percent():
    metrics = copy.deepcopy(GOOD)
    d = metrics["decisive"]["generators"]["tuned"]
    d.update(share_pivotal=0.0, share_pivotal_low=0.0, share_pivotal_high=0.004,
             js_auc=None, abs_delta_auc=None, entropy_base_auc=None, js_recall=None)
    row = {r.key: r for r in study_findings(metrics)}["critical"]
    assert row.reproduces == "no" and "share 0% [0.0%, 0.4%]" in row.this_run
    d.update(share_pivotal_high=0.06)  # e.g. 48 random positions: a few percent not excluded
    row = {r.key: r for r in study_findings(metrics)}["critical"]
    assert row.reproduces == "n/a" and "too few positions measured" in row.this_run


def test_critical_shows_the_stage_intervals():
    d = {"share_pivotal_low": 0.01, "share_pivotal_high": 0.05, "js_auc_low": 0.7,
         "js_auc_high": 0.95, "n_measured": 300, "n_positions": 4000}
    metrics = copy.deepcopy(GOOD)
    metrics["decisive"]["generators"]["tuned"].update(d)
    row = {r.key: r for r in study_findings(metrics)}["critical"]
    assert "3.0% [1.0%, 5.0%]" in row.this_run and "AUC 0.85 [0.70, 0.95]" in row.this_run
    assert "(300 of 4000 positions measured)" in row.this_run and row.reproduces == "yes"
