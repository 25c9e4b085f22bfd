"""The report's cross-sampling section (§7): the study's curves at matched budgets, then
selective extrapolation and the companion study's shortcuts, from the cross_sample stage's
outputs (data/plots/cross_*.csv, data/cross/*.parquet).
"""

from __future__ import annotations

from rlvr.report import cross_figures as X
from rlvr.report import experiments as E
from rlvr.report.blocks import Block, Inputs, Notice, ReportOptions, figure, table

CROSS_CURVE = "cross_accuracy_by_budget"  # plots written by the cross_sample stage
CROSS_VERSUS = "cross_rule_vs_random"


def render_cross(inp: Inputs, opt: ReportOptions) -> list[Block]:
    curve = inp.csv(inp.layout.plot(CROSS_CURVE))
    if curve is None:
        return [Notice(f"cross-sampling accuracy vs budget (data/plots/{CROSS_CURVE}.csv)",
                       "cross_sample")]
    # the replacement arms (forward, backward) in the study's figures; the others below
    exact = curve[(curve["alpha"] == 0) & (curve["top_k"] == 0)]
    out = [figure(lambda: E.cross_budget(exact), "cross-sampling curves", opt.params.dpi)]
    versus = inp.csv(inp.layout.plot(CROSS_VERSUS))
    if versus is not None:
        versus = versus[versus["arm"].isin(exact["arm"].unique())].rename(
            columns={"arm": "direction"})
        out.append(figure(lambda: E.cross_versus_random(versus), "rule minus random",
                          opt.params.dpi))
        out.append(table(versus, "Each rule minus random at the same target budget "
                         "(achieved budgets of both; paired prompt bootstrap 95% CI).",
                         max_rows=60))
    keep = [c for c in ("direction", "rule", "target_budget", "budget_share", "calibration_round",
                        "threshold", "n_responses", "budget_tokens", "accuracy", "accuracy_low",
                        "accuracy_high", "accuracy_seed_std") if c in curve.columns]
    out.append(table(curve[keep], "Cross-sampling points: target and achieved budget "
                     "(mean per-response share), calibrated threshold and round, accuracy "
                     "with bootstrap CI and the std over seeds.", max_rows=60))
    calibration = inp.table(inp.layout.cross_dir / "calibration.parquet")
    if calibration is not None:
        out.append(table(calibration, "Calibration: every round tried per (arm, rule, "
                         "budget): its threshold, achieved budget, whether it is within the "
                         "tolerance, and the round reported.", max_rows=80))
    return out + _render_extensions(inp, opt)


def _render_extensions(inp: Inputs, opt: ReportOptions) -> list[Block]:
    """Selective extrapolation and the companion study's shortcuts (`rlvr.cross.shortcuts`)."""
    cross = inp.layout.cross_dir
    paired = inp.table(cross / "paired.parquet")
    if paired is None:
        return [Notice("paired comparisons (data/cross/paired.parquet)", "cross_sample")]
    out = []
    extra = paired[paired["comparison"] == "minus_tuned"]
    if len(extra):
        out.append(figure(lambda: X.extrapolation(paired), "extrapolation", opt.params.dpi))
        out.append(table(extra, "Extrapolated decoding minus the tuned model alone (same "
                         "prompts and seeds; paired prompt bootstrap 95%).", max_rows=40))
    overlap = inp.table(cross / "gate_overlap.parquet")
    if overlap is not None and len(overlap):
        out.append(figure(lambda: X.shortcuts(overlap, paired), "shortcuts", opt.params.dpi))
        out.append(table(overlap, "Each gate calibrated to each budget on the pilot (the "
                         "primary's own trajectories): its share, and its overlap with "
                         "the JS gate's positions.", max_rows=60))
    for name, caption in (
        ("mixing_shortcut.parquet", "At the switched steps of the top-K arms: total variation "
         "between the exact and the top-K switch distributions, and how often the draw with the "
         "same uniform changes."),
        ("fixed_thresholds.parquet", "The budget the companion's own unbudgeted gap_neg "
         "thresholds reach on this pair's pilot."),
    ):
        df = inp.table(cross / name)
        if df is not None and len(df):
            out.append(table(df, caption, max_rows=40))
    short = paired[paired["comparison"] == "minus_exact"]
    if len(short):
        out.append(table(short, "The companion's top-K arm minus the exact arm's js cell "
                         "at the same budget (paired 95%).", max_rows=40))
    return out
