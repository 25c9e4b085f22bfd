"""The report's figures for the cross-sampling extensions: selective extrapolation against the
tuned model alone, and what the companion study's shortcuts change.

Same contract as `figures`: DataFrame in, (Figure, one-line caption with the numbers) out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rlvr.report.experiments import RULE_COLOURS, budget_axis
from rlvr.report.figures import WIDE, SchemaError, finish_axes, plt, require_columns

PAIRED = ["comparison", "arm", "rule", "target_budget", "budget_cell", "diff", "diff_low",
          "diff_high"]


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _interval(r) -> str:
    return f"{_pts(r['diff'])} [{_pts(r['diff_low'])}, {_pts(r['diff_high'])}]"


def _errorbars(ax, rows: pd.DataFrame, x: np.ndarray, **kw) -> None:
    y = 100 * rows["diff"].to_numpy()
    err = 100 * np.vstack([rows["diff"] - rows["diff_low"], rows["diff_high"] - rows["diff"]])
    ax.errorbar(x, y, yerr=err, marker="o", capsize=3, lw=0.8, **kw)


def extrapolation(paired: pd.DataFrame) -> tuple[Figure, str]:
    """Extrapolated decoding minus the tuned model alone, per arm with α > 0, rule and budget.

    paired: `agg_cross_paired` rows; the `minus_tuned` ones are drawn (x = achieved budget, the
    `all` endpoint at 100%), with their paired prompt-bootstrap 95% intervals.
    """
    require_columns(paired, PAIRED, "paired comparisons")
    df = paired[paired["comparison"] == "minus_tuned"]
    if df.empty:
        raise SchemaError("paired comparisons: no minus_tuned rows (no extrapolation arm ran)")
    arms = sorted(df["arm"].unique())
    fig, axes = plt.subplots(1, len(arms), figsize=WIDE, squeeze=False, sharey=True)
    parts = []
    for ax, arm in zip(axes[0], arms, strict=True):
        sub = df[df["arm"] == arm]
        for i, (rule, rows) in enumerate(sub.groupby("rule", sort=True)):
            rows = rows.sort_values("budget_cell")
            x = 100 * rows["budget_cell"].to_numpy() * (1 + 0.06 * i)  # apart at one budget
            _errorbars(ax, rows, x, label="every position" if rule == "all" else rule,
                       color="k" if rule == "all" else RULE_COLOURS.get(rule, f"C{i}"),
                       ls="" if rule == "all" else "-")
        ax.axhline(0, color="grey", lw=1)
        budget_axis(ax, sub, every=True)
        ax.set_title(arm, fontsize=9)
        finish_axes(fig, ax, "% tokens drawn from the blend (achieved, log)",
                    "accuracy − tuned alone, points")
        gated = sub[sub["rule"] != "all"]
        best = gated.loc[gated["diff"].idxmax()] if len(gated) else None
        every = sub[sub["rule"] == "all"]
        note = f"{arm}: {int((gated['diff_low'] > 0).sum())} of {len(gated)} gated cells above 0"
        if best is not None:
            note += (f", best {best['rule']} at {100 * best['target_budget']:g}% "
                     f"{_interval(best)}")
        if len(every):
            note += f", every position {_interval(every.iloc[0])}"
        parts.append(note)
    return fig, ("Selective extrapolation minus the tuned model alone (accuracy points, paired "
                 "prompt bootstrap 95%): " + "; ".join(parts) + ".")


def shortcuts(overlap: pd.DataFrame, paired: pd.DataFrame) -> tuple[Figure, str]:
    """The companion's shortcuts: which positions its gates pick, and what its top-K mixing
    costs in accuracy.

    overlap: `rlvr.cross.shortcuts.gate_overlap` rows (arm, target_budget, rule,
    jaccard_with_js); paired: `agg_cross_paired` rows, the `minus_exact` ones drawn.
    """
    require_columns(overlap, ["arm", "target_budget", "rule", "jaccard_with_js"], "gate overlap")
    require_columns(paired, PAIRED, "paired comparisons")
    fig, (left, right) = plt.subplots(1, 2, figsize=WIDE)
    for i, (rule, rows) in enumerate(overlap.groupby("rule", sort=True)):
        for arm, sub in rows.groupby("arm", sort=True):
            sub = sub.sort_values("target_budget")
            left.plot(100 * sub["target_budget"], sub["jaccard_with_js"], marker=".",
                      color=RULE_COLOURS.get(rule, f"C{i}"), ls="-" if arm == "forward" else "--",
                      label=rule if arm == "forward" else None)
    budget_axis(left, overlap)
    left.set_title("gated positions vs JS's (pilot; -- backward)", fontsize=8)
    finish_axes(fig, left, "target budget % (log)", "Jaccard with the JS gate")
    exact = paired[paired["comparison"] == "minus_exact"]
    for i, ((arm, rule), rows) in enumerate(exact.groupby(["arm", "rule"], sort=True)):
        rows = rows.sort_values("target_budget")
        _errorbars(right, rows, 100 * rows["target_budget"].to_numpy() * (1 + 0.06 * i),
                   label=f"{arm} {rule}", color=f"C{i}")
    right.axhline(0, color="grey", lw=1)
    if len(exact):
        budget_axis(right, exact, every=True)
    right.set_title("top-K arm minus exact js (same budget)", fontsize=8)
    finish_axes(fig, right, "target budget % (log)", "accuracy points")
    parts = []
    forward = overlap[(overlap["arm"] == "forward") & (overlap["rule"] == "kl_sym_topk")]
    if len(forward):
        parts.append("forward Jaccard of the companion's gate with JS " + ", ".join(
            f"{r.jaccard_with_js:.2f} at {100 * r.target_budget:g}%"
            for r in forward.sort_values("target_budget").itertuples()))
    parts += [f"{r['arm']} {r['rule']} at {100 * r['target_budget']:g}% {_interval(r)}"
              for _, r in exact.sort_values(["arm", "rule", "target_budget"]).iterrows()]
    return fig, ("The companion study's shortcuts: its ½(KL+RKL) top-K gate (and the other "
                 "gates) against JS on the same pilot positions at matched budgets, and "
                 "accuracy of its top-K mixing minus the exact arm (paired 95%); "
                 + ("; ".join(parts) or "no shortcut arm ran") + ".")
