"""The report's figures for the experiments: cross-sampling curves (§3), weighted-advantage
training (§4), and the model family's accuracies and training logs.

Same contract as `figures`: DataFrame in, (Figure, one-line caption with the numbers) out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from rlvr.report.figures import (
    WIDE,
    SchemaError,
    finish_axes,
    pct,
    plt,
    require_columns,
    split_groups,
)

RULE_COLOURS = {"js": "C3", "random": "C7", "entropy": "C0", "entropy_primary": "C9",
                "delta": "C2", "gap_neg": "C1", "gap_pos": "C4", "kl_base_tuned": "C5",
                "kl_tuned_base": "C6", "early": "C8", "kl_sym": "k", "kl_sym_topk": "#9467bd80",
                "gap_top_neg": "#b8860b", "gap_top_pos": "#4682b4"}
ENDPOINT_RULES = {"none": "primary alone", "all": "intervention alone"}


def cross_budget(df: pd.DataFrame) -> tuple[Figure, str]:
    """Accuracy against achieved budget per rule at matched targets, one panel per direction.

    df: direction, rule, target_budget, budget_share (achieved mean per-response share),
    accuracy, accuracy_low, accuracy_high; rules `none` / `all` (the endpoints) are drawn as
    horizontal lines. The x axis is logarithmic: the study's regime is a few percent.
    """
    require_columns(df, ["direction", "rule", "target_budget", "budget_share", "accuracy",
                         "accuracy_low", "accuracy_high"], "cross-sampling curve")
    directions = sorted(df["direction"].unique(), key=lambda d: d != "forward")
    fig, axes = plt.subplots(1, len(directions), figsize=WIDE, squeeze=False, sharey=True)
    parts = []
    for ax, direction in zip(axes[0], directions, strict=True):
        sub = df[df["direction"] == direction]
        for rule, rows in split_groups(sub[~sub["rule"].isin(ENDPOINT_RULES)], ["rule"]):
            rows = rows.sort_values("target_budget")
            x = 100 * rows["budget_share"]
            line = ax.plot(x, 100 * rows["accuracy"], marker="o", label=rule,
                           color=RULE_COLOURS.get(rule))[0]
            ax.fill_between(x, 100 * rows["accuracy_low"], 100 * rows["accuracy_high"],
                            alpha=0.15, color=line.get_color())
        for rule, label in ENDPOINT_RULES.items():
            end = sub[sub["rule"] == rule]
            if len(end):
                acc = float(end["accuracy"].iloc[0])
                ax.axhline(100 * acc, color="grey", ls=":" if rule == "none" else "--", lw=1)
                ax.annotate(f"{label} {pct(acc)}", (0.99, 100 * acc), fontsize=7, va="bottom",
                            ha="right", xycoords=("axes fraction", "data"))
        budget_axis(ax, sub)
        ax.set_title(direction, fontsize=9)
        finish_axes(fig, ax, "% tokens from the intervention model (achieved, log)",
                    "accuracy %")
        parts.append(_small_budget_note(sub, direction))
    return fig, ("Cross-sampling accuracy at matched budgets (each rule's threshold calibrated "
                 "to the same targets; x = achieved mean per-response share; bands: prompt "
                 "bootstrap 95% CI). " + "; ".join(parts) + ".")


def budget_axis(ax, df: pd.DataFrame, every: bool = False) -> None:
    """Log x axis ticked at the target budgets, in plain percent (`every`: 100% too)."""
    ax.set_xscale("log")
    targets = sorted(t for t in df["target_budget"].unique() if 0 < t < 1 or (every and t == 1))
    ax.set_xticks([100 * t for t in targets], [f"{100 * t:g}" for t in targets])
    ax.xaxis.set_minor_locator(NullLocator())


def _small_budget_note(df: pd.DataFrame, direction: str, largest: float = 0.1) -> str:
    """'direction at 2% (achieved js 2.1%, random 2.0%): js 44.0%, random 41.0%, ...'."""
    notes = []
    for target, rows in df[(df["target_budget"] > 0) & (df["target_budget"] <= largest)
                           ].groupby("target_budget"):
        accs = ", ".join(f"{r.rule} {pct(r.accuracy)} (at {pct(r.budget_share)})"
                         for r in rows.sort_values("rule").itertuples())
        notes.append(f"{pct(target)}: {accs}")
    return f"{direction} " + (" | ".join(notes) if notes else "no budget <= 10%")


def cross_versus_random(df: pd.DataFrame) -> tuple[Figure, str]:
    """Each rule minus random at every target budget, with paired bootstrap 95% intervals.

    df: direction, target_budget, rule, diff, diff_low, diff_high (`agg_cross_rule_vs_random`).
    """
    require_columns(df, ["direction", "target_budget", "rule", "diff", "diff_low", "diff_high"],
                    "rule vs random")
    directions = sorted(df["direction"].unique(), key=lambda d: d != "forward")
    fig, axes = plt.subplots(1, len(directions), figsize=WIDE, squeeze=False, sharey=True)
    rules = sorted(df["rule"].unique())
    parts = []
    for ax, direction in zip(axes[0], directions, strict=True):
        sub = df[df["direction"] == direction]
        for i, rule in enumerate(rules):
            rows = sub[sub["rule"] == rule].sort_values("target_budget")
            # a small multiplicative offset per rule, so intervals at one budget do not overlap
            x = 100 * rows["target_budget"] * (1 + 0.08 * (i - (len(rules) - 1) / 2))
            y = 100 * rows["diff"]
            err = 100 * np.vstack([rows["diff"] - rows["diff_low"],
                                   rows["diff_high"] - rows["diff"]])
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, ls="-", lw=0.8, label=rule,
                        color=RULE_COLOURS.get(rule))
        ax.axhline(0, color="grey", lw=1)
        budget_axis(ax, sub)
        ax.set_title(direction, fontsize=9)
        finish_axes(fig, ax, "target budget % (log)", "accuracy − random, points")
        small = sub[sub["target_budget"] <= 0.1]
        above = small[(small["diff_low"] > 0) | (small["diff_high"] < 0)]
        parts.append(f"{direction}: {len(above)} of {len(small)} (rule, budget <= 10%) "
                     "intervals exclude 0")
    return fig, ("Each rule minus the random control at the same target budget (paired "
                 "bootstrap over prompts, 95%); " + "; ".join(parts) + ".")


# (panel title, columns): the DAPO diagnostics of a training log; the second column is dashed
DAPO_PANELS = (
    ("active clips: low —, high - -", ["clip_frac_low", "clip_frac_high"]),
    ("std of ratio π/π_old", ["ratio_std"]),
    ("k3 KL(π_old‖π): all —, non-first - -", ["k3_old", "k3_old_later"]),
    ("KL to base per token", ["kl_base"]),
)


def dapo_diagnostics(logs: dict[str, pd.DataFrame]) -> tuple[Figure, str]:
    """Per step: active clip fractions (low/high side), ratio spread, k3 and KL to base.

    logs: name -> a training log with `step` and the trainer's update columns (`rl_log.csv`,
    or a variant's mean over seeds). Columns a log lacks are skipped.
    """
    for name, df in logs.items():
        require_columns(df, ["step", "clip_frac_low", "clip_frac_high", "k3_old_later"],
                        f"training log {name}")
    fig, axes = plt.subplots(1, len(DAPO_PANELS), figsize=(11.0, 3.2), squeeze=False)
    for k, (ax, (title, columns)) in enumerate(zip(axes[0], DAPO_PANELS, strict=True)):
        for i, (name, df) in enumerate(logs.items()):
            for j, col in enumerate(c for c in columns if c in df.columns):
                # one legend (the logs, by colour) on the first panel keeps the panels readable
                ax.plot(df["step"], df[col], lw=1, color=f"C{i}", ls=("-", "--")[j % 2],
                        label=name if k == 0 and j == 0 else None)
        ax.set_title(title, fontsize=8)
        finish_axes(fig, ax, "step", "", legend=k == 0)
    parts = []
    for name, df in logs.items():
        later = df[df["step"] > 0]
        parts.append(f"{name}: clip low {pct(later['clip_frac_low'].mean())}, high "
                     f"{pct(later['clip_frac_high'].mean())}, k3 on non-first updates "
                     f"{later['k3_old_later'].mean():.2g} (mean over steps)")
    return fig, ("DAPO diagnostics per step (dashed: k3 over the updates after the first of "
                 "each rollout batch, which is on-policy); " + "; ".join(parts) + ".")


def weighted_summary(df: pd.DataFrame) -> tuple[Figure, str]:
    """Final accuracy per weighting variant: mean ± std over seeds, with the baseline marked.

    df: variant, mean, std, n_seeds (one row per variant; `baseline` is the plain trainer) and
    optionally diff, diff_lo, diff_hi (difference to baseline and its CI) and distinguishable.
    """
    require_columns(df, ["variant", "mean", "std", "n_seeds"], "weighted results")
    df = df.sort_values("variant", key=lambda s: s.ne("baseline"), kind="stable")
    df = df.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=WIDE)
    colors = ["grey" if v == "baseline" else "C0" for v in df["variant"]]
    ax.bar(df["variant"], 100 * df["mean"], yerr=100 * df["std"].fillna(0.0), capsize=4,
           color=colors)
    base = df[df["variant"] == "baseline"]
    if len(base):
        ax.axhline(100 * float(base["mean"].iloc[0]), color="grey", ls=":", lw=1)
    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    finish_axes(fig, ax, "variant", "accuracy % (mean ± std over seeds)", legend=False)
    with_diff = {"diff", "diff_lo", "diff_hi"} <= set(df.columns)
    parts = []
    for _, r in df.iterrows():
        note = f"{r['variant']} {100 * r['mean']:.1f} ± {100 * r['std']:.1f} (n={r['n_seeds']})"
        if r["variant"] != "baseline" and with_diff:
            note += (f", Δ {100 * r['diff']:+.1f} [{100 * r['diff_lo']:+.1f}, "
                     f"{100 * r['diff_hi']:+.1f}]")
            if "distinguishable" in df.columns:
                note += "" if bool(r["distinguishable"]) else " (within seed noise)"
        parts.append(note)
    return fig, "Held-out accuracy per weighting variant, % mean ± std over seeds (Δ to " \
        "baseline with 95% CI); " + "; ".join(parts) + "."


def weighted_curves(df: pd.DataFrame, metric: str) -> tuple[Figure, str]:
    """Evaluation metric over training steps per variant: mean over seeds with a ±std band.

    df: the training table (variant, seed, step, metric, value); rows of other metrics ignored.
    """
    require_columns(df, ["variant", "seed", "step", "metric", "value"], "training table")
    sub = df[df["metric"] == metric]
    if sub.empty:
        raise SchemaError(f"training table: no rows with metric {metric!r}; has "
                          f"{sorted(df['metric'].unique())}")
    fig, ax = plt.subplots(figsize=WIDE)
    parts = []
    for variant, rows in split_groups(sub, ["variant"]):
        stats = rows.groupby("step")["value"].agg(["mean", "std"]).fillna(0.0)
        line = ax.plot(stats.index, stats["mean"], marker=".", label=variant)[0]
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                        alpha=0.15, color=line.get_color())
        parts.append(f"{variant} {stats['mean'].iloc[-1]:.3f} at step {stats.index[-1]}")
    finish_axes(fig, ax, "training step", metric)
    return fig, f"{metric} over training, mean ± std over seeds; final: " + "; ".join(parts) + "."


def model_accuracies(df: pd.DataFrame) -> tuple[Figure, str]:
    """Held-out accuracy of each model of the family.

    df: model, accuracy (in [0, 1]), optionally ci_lo, ci_hi (a 95% interval, drawn as error
    bars when every model has one).
    """
    require_columns(df, ["model", "accuracy"], "model accuracies")
    fig, ax = plt.subplots(figsize=(8.0, 3.0))
    yerr = None
    if {"ci_lo", "ci_hi"} <= set(df.columns) and df[["ci_lo", "ci_hi"]].notna().all().all():
        yerr = 100 * np.vstack([df["accuracy"] - df["ci_lo"], df["ci_hi"] - df["accuracy"]])
    ax.bar(df["model"].astype(str), 100 * df["accuracy"], yerr=yerr, capsize=4)
    for i, acc in enumerate(df["accuracy"]):
        ax.text(i, 100 * acc, f"{100 * acc:.1f}", ha="center", va="bottom", fontsize=7)
    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    finish_axes(fig, ax, "model", "accuracy %", legend=False)
    parts = [f"{m} {pct(a)}" for m, a in zip(df["model"], df["accuracy"], strict=True)]
    return fig, "Held-out accuracy per model: " + ", ".join(parts) + "."


def training_curves(curves: dict[str, pd.DataFrame]) -> tuple[Figure, str]:
    """One panel per training log (e.g. pretrain loss, RL reward): every numeric column vs step.

    curves: name -> DataFrame with a `step` column and one or more value columns.
    """
    for name, df in curves.items():
        require_columns(df, ["step"], f"training curve {name}")
    fig, axes = plt.subplots(1, len(curves), figsize=(8.0, 3.0), squeeze=False)
    parts = []
    for ax, (name, df) in zip(axes[0], curves.items(), strict=True):
        df = df.sort_values("step")
        values = [c for c in df.columns if c != "step" and pd.api.types.is_numeric_dtype(df[c])]
        for col in values:
            ax.plot(df["step"], df[col], label=col, lw=1)
        ax.set_title(name, fontsize=9)
        finish_axes(fig, ax, "step", "", legend=len(values) > 1)
        if values and len(df):
            first, last = df[values[0]].iloc[0], df[values[0]].iloc[-1]
            parts.append(f"{name} {values[0]} {first:.3g} → {last:.3g} over "
                         f"{df['step'].iloc[-1]:g} steps")
    return fig, "Training logs of the model family; " + "; ".join(parts) + "."
