"""Study-vs-run verdicts: each rule on planted numbers, yes / partly / no / n/a."""

from __future__ import annotations

import pandas as pd

from rlvr.report.verdicts import TABLE_COLUMNS, verdict_table


def _headline(**over) -> dict:
    tuned = {"share_js_above_0.01": 0.1, "share_js_above_0.1": 0.03,
             "divergent_share_high_entropy": 0.6, "other_share_high_entropy": 0.15,
             "mean_js_first_bin": 0.05, "mean_js_middle_bins": 0.01, "mean_js_last_bin": 0.02,
             "divergent_share_top1_in_base_top3": 0.9, "divergent_share_base_prob_below_low": 0.04,
             "divergent_share_top1_is_base_top1": 0.3, **over}
    return {"pairs": {"base__rl": {"tuned": tuned}}}


def _cross(js_acc: float, rand_acc: float, direction: str = "forward") -> pd.DataFrame:
    lo, hi = (0.2, 0.6) if direction == "forward" else (0.6, 0.2)
    rows = [(direction, "js", 1.0, None, 0.0, lo, lo, lo), (direction, "js", -1.0, None, 1.0, hi,
                                                            hi, hi),
            (direction, "js", 0.1, None, 0.08, js_acc, js_acc - 0.05, js_acc + 0.05),
            (direction, "random", 0.08, 0.1, 0.08, rand_acc, rand_acc - 0.05, rand_acc + 0.05)]
    return pd.DataFrame(rows, columns=["direction", "rule", "threshold", "matched_threshold",
                                       "budget_share", "accuracy", "accuracy_low",
                                       "accuracy_high"])


def _verdicts(headline=None, roles=None, evolution=None, controls=None, cross=None) -> dict:
    table = verdict_table(headline, roles, evolution, controls, cross)
    assert list(table.columns) == TABLE_COLUMNS and len(table) == 9
    return dict(zip(table["finding"].str.split(":").str[0], table["reproduces?"], strict=True))


def test_every_finding_reproduces_on_study_like_numbers():
    roles = pd.DataFrame({"pair": "base__rl", "generator": "tuned",
                          "role": ["final_answer", "other"], "is_decisive": [True, False],
                          "share_divergent": [0.4, 0.02]})
    evolution = pd.DataFrame({"rl_step": [8, 16, None], "js_p95": [0.01, 0.05, 0.08],
                              "jaccard_with_final": [0.3, 0.6, 1.0]})
    controls = pd.DataFrame({"tuned_kind": ["rl", "sft"], "generator": "tuned",
                             "share_above_001": [0.1, 0.4], "top_decile_js_mass": [0.9, 0.6]})
    cross = pd.concat([_cross(0.5, 0.3), _cross(0.3, 0.5, "backward")])
    got = _verdicts(_headline(), roles, evolution, controls, cross)
    assert set(got.values()) == {"yes"}, got


def test_rules_say_no_and_partly():
    got = _verdicts(_headline(**{"share_js_above_0.01": 0.7, "mean_js_last_bin": 0.005}),
                    cross=_cross(0.45, 0.44))
    assert got["sparsity"] == "no"  # 30% near zero
    assert got["position"] == "partly"  # start high, end not above the middle
    assert got["cross-sampling forward"] == "partly"  # half-way, but not beyond random's CI
    assert got["token identity"] == got["checkpoint evolution"] == got["SFT vs RL"] == "n/a"
    assert got["cross-sampling backward"] == "n/a"


def test_missing_numbers_are_not_a_verdict():
    got = _verdicts(_headline(divergent_share_high_entropy=None))
    assert got["entropy"] == "n/a"
    assert _verdicts(None)["sparsity"] == "n/a"
