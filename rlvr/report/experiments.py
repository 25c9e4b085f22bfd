"""The report's figures for the experiments: cross-sampling curves (§3), weighted-advantage
training (§4), and the model family's accuracies and training logs.

Same contract as `figures`: DataFrame in, (Figure, one-line caption with the numbers) out.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rlvr.report.figures import (
    WIDE,
    SchemaError,
    finish_axes,
    pct,
    plt,
    require_columns,
    split_groups,
)

RULE_COLOURS = {"js": "C3", "random": "C7", "entropy": "C0", "delta": "C2"}


def cross_budget(df: pd.DataFrame, reference: dict[str, float] | None = None) -> tuple[Figure, str]:
    """Accuracy against effective budget per rule, one panel per direction, with CI bands.

    df: direction, rule, budget_share (mean share of tokens from the intervention model),
    accuracy, accuracy_low, accuracy_high (one row per swept threshold). reference: optional
    accuracies of the plain models (e.g. {"base": 0.2, "rl": 0.6}) drawn as horizontal lines.
    """
    require_columns(df, ["direction", "rule", "budget_share", "accuracy", "accuracy_low",
                         "accuracy_high"], "cross-sampling curve")
    directions = sorted(df["direction"].unique(), key=lambda d: d != "forward")
    parts = [_matched_budget_note(df[df["direction"] == d], d) for d in directions]
    fig, axes = plt.subplots(1, len(directions), figsize=WIDE, squeeze=False, sharey=True)
    for ax, direction in zip(axes[0], directions, strict=True):
        for rule, sub in split_groups(df[df["direction"] == direction], ["rule"]):
            sub = sub.sort_values("budget_share")
            x = 100 * sub["budget_share"]
            colour = RULE_COLOURS.get(rule)
            line = ax.plot(x, 100 * sub["accuracy"], marker="o", label=rule, color=colour)[0]
            ax.fill_between(x, 100 * sub["accuracy_low"], 100 * sub["accuracy_high"], alpha=0.2,
                            color=line.get_color())
        for name, acc in (reference or {}).items():
            ax.axhline(100 * acc, color="grey", ls=":", lw=1)
            ax.annotate(name, (1.0, 100 * acc), xycoords=("axes fraction", "data"), fontsize=7,
                        ha="right", va="bottom")
        ax.set_title(direction, fontsize=9)
        finish_axes(fig, ax, "% tokens from the intervention model", "accuracy %")
    return fig, ("Cross-sampling accuracy vs effective budget (bands: bootstrap CI); accuracy "
                 "interpolated at the js rule's smallest nonzero budget: " + "; ".join(parts) +
                 ".")


def _matched_budget_note(df: pd.DataFrame, direction: str) -> str:
    """'direction at b%: rule acc%, ...' with b the js rule's smallest nonzero budget."""
    anchor = df[df["rule"] == "js"] if (df["rule"] == "js").any() else df
    nonzero = anchor.loc[anchor["budget_share"] > 0, "budget_share"]
    if nonzero.empty:
        return f"{direction}: no switched tokens"
    b = float(nonzero.min())
    accs = []
    for rule, sub in split_groups(df, ["rule"]):
        sub = sub.sort_values("budget_share")
        inside = sub["budget_share"].min() <= b <= sub["budget_share"].max()
        acc = float(np.interp(b, sub["budget_share"], sub["accuracy"])) if inside else math.nan
        accs.append(f"{rule} {pct(acc)}")
    return f"{direction} at {pct(b)}: " + ", ".join(accs)


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
