"""The report's figures that compare: candidates (top-k overlap, ranks), RL checkpoints, the
SFT/RFT controls, truncated JS, correct vs incorrect responses, and the ground-truth roles.

Same contract as `rlvr.report.figures`: DataFrame in, (Figure, one-line caption) out.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rlvr.report.figures import (
    WIDE,
    SchemaError,
    finish_axes,
    group_label,
    pct,
    require_columns,
    split_groups,
    style_axes,
)

# --- §2 probability-mass reallocation ---------------------------------------------------------


def topk_overlap(df: pd.DataFrame) -> tuple[Figure, str]:
    """Mean overlap of the two models' top-k candidate sets, k = 1..5.

    df: pair, generator, subset ('all' | 'divergent' = JS > τ), k, mean_overlap (in [0, 1]).
    """
    require_columns(df, ["pair", "generator", "subset", "k", "mean_overlap"], "top-k overlap")
    fig, ax = plt.subplots(figsize=WIDE)
    parts = []
    for label, sub in split_groups(df, ["pair", "generator", "subset"]):
        sub = sub.sort_values("k")
        style = style_axes(sub)
        style["linestyle"] = "-" if sub["subset"].iloc[0] == "all" else "--"
        marker = "s" if sub["generator"].iloc[0] == "base" else "o"
        ax.plot(sub["k"], 100 * sub["mean_overlap"], marker=marker, label=label, **style)
        by_k = dict(zip(sub["k"], sub["mean_overlap"], strict=True))
        parts.append(f"{label} k=1 {pct(by_k.get(1, math.nan))}, k=2 {pct(by_k.get(2, math.nan))}")
    ax.set_xticks(sorted(df["k"].unique()))
    ax.set_ylim(0, 102)
    finish_axes(fig, ax, "k", "% overlap of top-k sets")
    return fig, "Top-k candidate overlap (dashed: divergent positions only, squares: base " \
        "responses); " + \
        "; ".join(parts) + "."


def rank_histogram(df: pd.DataFrame, realloc: pd.DataFrame | None = None) -> tuple[Figure, str]:
    """Rank under the base model of the tuned model's top-1 token.

    df: pair, generator, subset, rank_bucket (the last bucket is "beyond"), rank_label,
    share_positions. realloc (optional): pair, generator, subset, share_base_prob_below_low
    (the share whose base probability is below the low-probability cut).
    """
    require_columns(df, ["pair", "generator", "subset", "rank_bucket", "rank_label",
                         "share_positions"], "rank histogram")
    groups = split_groups(df, ["pair", "generator", "subset"])
    fig, ax = plt.subplots(figsize=WIDE)
    width = 0.8 / max(len(groups), 1)
    parts = []
    low = {}
    if realloc is not None:
        require_columns(realloc, ["pair", "generator", "subset", "share_base_prob_below_low"],
                        "reallocation")
        low = {group_label(r, ["pair", "generator", "subset"]): r["share_base_prob_below_low"]
               for _, r in realloc.iterrows()}
    for i, (label, sub) in enumerate(groups):
        sub = sub.sort_values("rank_bucket")
        ax.bar(sub["rank_bucket"] + (i - len(groups) / 2 + 0.5) * width,
               100 * sub["share_positions"], width=width, label=label)
        top1 = float(sub.loc[sub["rank_bucket"] == 1, "share_positions"].sum())
        top3 = float(sub.loc[sub["rank_bucket"] <= 3, "share_positions"].sum())
        note = f"{label} top-1 {pct(top1)}, top-3 {pct(top3)}"
        if label in low:
            note += f", p_base<low {pct(float(low[label]))}"
        parts.append(note)
    ticks = df.drop_duplicates("rank_bucket").sort_values("rank_bucket")
    ax.set_xticks(ticks["rank_bucket"], ticks["rank_label"].astype(str), fontsize=7)
    finish_axes(fig, ax, "rank of the tuned top-1 under base", "% positions")
    return fig, "Rank of the tuned top-1 under the base model; " + "; ".join(parts) + "."


# --- evolution, controls, truncation, ground truth -------------------------------------------


def checkpoint_evolution(df: pd.DataFrame) -> tuple[Figure, str]:
    """JS percentiles per RL checkpoint and Jaccard overlap with the final model's divergent set.

    df: rl_step, is_final, js_p50, js_p90, js_p95, js_p99, jaccard_with_final (the final model's
    row may have no step; it is drawn one checkpoint interval after the last one).
    """
    cols = ["rl_step", "is_final", "js_p50", "js_p90", "js_p95", "js_p99", "jaccard_with_final"]
    require_columns(df, cols, "checkpoint evolution")
    ckpt = df[~df["is_final"].astype(bool)].sort_values("rl_step")
    final = df[df["is_final"].astype(bool)]
    steps = ckpt["rl_step"].astype(float).tolist()
    gap = (steps[-1] - steps[-2]) if len(steps) > 1 else max(steps[-1] if steps else 1.0, 1.0)
    final_x = (steps[-1] if steps else 0.0) + gap
    x = steps + [final_x] * len(final)
    rows = pd.concat([ckpt, final])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=WIDE)
    for q, style in (("js_p50", ":"), ("js_p90", "-."), ("js_p95", "--"), ("js_p99", "-")):
        ax1.plot(x, rows[q], style, marker=".", label=q.removeprefix("js_"))
    ax2.plot(x, rows["jaccard_with_final"], marker="o")
    for ax in (ax1, ax2):
        ax.set_xticks(x, [f"{s:g}" for s in steps] + ["final"] * len(final), fontsize=7)
    ax1.set_title("JS percentiles", fontsize=9)
    ax2.set_title("Jaccard with final divergent set", fontsize=9)
    ax2.set_ylim(0, 1.05)
    finish_axes(fig, ax1, "RL step", "JS")
    finish_axes(fig, ax2, "RL step", "Jaccard", legend=False)
    if ckpt.empty:
        return fig, "Evolution over RL checkpoints: no checkpoint rows."
    first, last = ckpt.iloc[0], ckpt.iloc[-1]
    note = (f"from step {first['rl_step']:g} to {last['rl_step']:g}: p50 {first['js_p50']:.3f} → "
            f"{last['js_p50']:.3f}, p99 {first['js_p99']:.3f} → {last['js_p99']:.3f}, "
            f"Jaccard with final {first['jaccard_with_final']:.2f} → "
            f"{last['jaccard_with_final']:.2f}")
    if len(final):
        note += f"; final model p99 {final['js_p99'].iloc[0]:.3f}"
    return fig, "Evolution over RL checkpoints (base responses), " + note + "."


def tuned_comparison(df: pd.DataFrame) -> tuple[Figure, str]:
    """RL vs SFT vs RFT side by side: how dense the shift is, and where it sits.

    df: tuned_kind, generator, share_above_001, share_divergent, top_decile_js_mass,
    mean_js_first_bin, mean_js_middle_bins, mean_js_last_bin.
    """
    cols = ["tuned_kind", "generator", "share_above_001", "share_divergent",
            "top_decile_js_mass", "mean_js_first_bin", "mean_js_middle_bins", "mean_js_last_bin"]
    require_columns(df, cols, "rl vs sft vs rft")
    groups = split_groups(df, ["tuned_kind", "generator"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=WIDE)
    stats = (("share_above_001", "JS > 0.01"), ("share_divergent", "divergent"),
             ("top_decile_js_mass", "top-10% JS mass"))
    width = 0.8 / max(len(groups), 1)
    parts = []
    for i, (label, sub) in enumerate(groups):
        r = sub.iloc[0]
        offset = (i - len(groups) / 2 + 0.5) * width
        ax1.bar(np.arange(len(stats)) + offset, [100 * r[c] for c, _ in stats], width=width,
                label=label)
        ax2.plot([0, 1, 2], [r["mean_js_first_bin"], r["mean_js_middle_bins"],
                             r["mean_js_last_bin"]], marker="o", label=label)
        parts.append(f"{label} {pct(r['share_above_001'])} above 0.01, "
                     f"{pct(r['share_divergent'])} divergent")
    ax1.set_xticks(np.arange(len(stats)), [t for _, t in stats], fontsize=7)
    ax2.set_xticks([0, 1, 2], ["first bin", "middle", "last bin"], fontsize=7)
    finish_axes(fig, ax1, "", "%", legend=False)
    finish_axes(fig, ax2, "position", "mean JS")
    return fig, "Density and placement of shifts per tuned model; " + "; ".join(parts) + "."


def truncation_error(df: pd.DataFrame) -> tuple[Figure, str]:
    """Error of top-p-truncated JS against exact JS.

    df: pair, generator, mae, spearman (rank correlation).
    """
    require_columns(df, ["pair", "generator", "mae", "spearman"], "truncation")
    labels = [label for label, _ in split_groups(df, ["pair", "generator"])]
    rows = [sub.iloc[0] for _, sub in split_groups(df, ["pair", "generator"])]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=WIDE)
    ax1.barh(labels, [r["mae"] for r in rows])
    ax2.barh(labels, [r["spearman"] for r in rows])
    ax2.set_xlim(min(0.0, min(r["spearman"] for r in rows)), 1)
    ax1.set_title("mean |js_top_p − js|", fontsize=9)
    ax2.set_title("Spearman ρ(js_top_p, js)", fontsize=9)
    finish_axes(fig, ax1, "nats", "", legend=False)
    finish_axes(fig, ax2, "ρ", "", legend=False)
    parts = [f"{lab} MAE {r['mae']:.4f}, ρ {r['spearman']:.3f}"
             for lab, r in zip(labels, rows, strict=True)]
    return fig, "Top-p truncated JS vs exact JS; " + "; ".join(parts) + "."


def correct_vs_incorrect(df: pd.DataFrame) -> tuple[Figure, str]:
    """Mean JS and share divergent in correct vs incorrect responses.

    df: pair, generator, is_correct, mean_js, share_divergent.
    """
    require_columns(df, ["pair", "generator", "is_correct", "mean_js", "share_divergent"],
                    "correct vs incorrect")
    groups = split_groups(df, ["pair", "generator"])
    fig, ax = plt.subplots(figsize=WIDE)
    x = np.arange(len(groups))
    parts = []
    for j, correct in enumerate((True, False)):
        vals = []
        for _, sub in groups:
            hit = sub[sub["is_correct"].astype(bool) == correct]
            vals.append(float(hit["share_divergent"].iloc[0]) if len(hit) else math.nan)
        ax.bar(x + (j - 0.5) * 0.4, 100 * np.array(vals), width=0.4,
               label="correct" if correct else "incorrect")
    for label, sub in groups:
        by = dict(zip(sub["is_correct"].astype(bool), sub["share_divergent"], strict=True))
        parts.append(f"{label} {pct(by.get(True, math.nan))} correct vs "
                     f"{pct(by.get(False, math.nan))} incorrect")
    ax.set_xticks(x, [label for label, _ in groups], fontsize=7)
    finish_axes(fig, ax, "", "% positions divergent")
    return fig, "Share of divergent positions by response correctness; " + "; ".join(parts) + "."


def role_ground_truth(roles: pd.DataFrame, pr: pd.DataFrame | None = None) -> tuple[Figure, str]:
    """Share of divergent positions per token role, and precision/recall of JS > threshold.

    roles: pair, generator, role, share_divergent. pr (optional): pair, generator, threshold,
    precision, recall (of "JS > threshold" at finding the decisive roles).
    """
    require_columns(roles, ["pair", "generator", "role", "share_divergent"], "role shares")
    ncols = 1 if pr is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=WIDE, squeeze=False)
    groups = split_groups(roles, ["pair", "generator"])
    role_names = sorted(roles["role"].unique())
    width = 0.8 / max(len(groups), 1)
    ax = axes[0, 0]
    parts = []
    for i, (label, sub) in enumerate(groups):
        by = dict(zip(sub["role"], sub["share_divergent"], strict=True))
        ax.bar(np.arange(len(role_names)) + (i - len(groups) / 2 + 0.5) * width,
               [100 * by.get(r, math.nan) for r in role_names], width=width, label=label)
        top = max(by, key=lambda r: by[r])
        parts.append(f"{label} most divergent role {top} ({pct(by[top])})")
    ax.set_xticks(np.arange(len(role_names)), role_names, fontsize=7, rotation=20)
    finish_axes(fig, ax, "role", "% positions divergent", legend=pr is None)
    if pr is not None:
        require_columns(pr, ["pair", "generator", "threshold", "precision", "recall"], "role PR")
        ax = axes[0, 1]
        for label, sub in split_groups(pr, ["pair", "generator"]):
            sub = sub.sort_values("threshold")
            ax.plot(sub["recall"], sub["precision"], marker="o", label=label, **style_axes(sub))
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        finish_axes(fig, ax, "recall (decisive roles)", "precision")
        parts.append(_threshold_pr_note(pr))
    return fig, "Testbed ground truth; " + "; ".join(parts) + "."


def _threshold_pr_note(pr: pd.DataFrame) -> str:
    taus = np.sort(pr["threshold"].unique())
    tau = float(taus[np.argmin(np.abs(taus - 0.1))])
    rows = pr[np.isclose(pr["threshold"], tau)]
    return f"at JS > {tau:g}: " + ", ".join(
        f"{group_label(r, ['pair', 'generator'])} P={r['precision']:.2f} R={r['recall']:.2f}"
        for _, r in rows.iterrows())


# --- §6 measured decisiveness (the decisive stage) --------------------------------------------


def _interval(row) -> str:
    """The stage's 95% interval of a row's AUC, when it has one."""
    lo, hi = getattr(row, "auc_low", None), getattr(row, "auc_high", None)
    return "" if lo is None or hi is None or pd.isna(lo) else f" [{lo:.2f}, {hi:.2f}]"


def measured_decisiveness(df: pd.DataFrame, pivot_cut: float) -> tuple[Figure, str]:
    """Recall of each signal at finding the positions whose resampling moves success by at
    least `pivot_cut`, against the share of positions it flags; one panel per generator.

    df: generator, signal, pivot_cut, flag_share, recall, precision, auc, base_rate.
    """
    require_columns(df, ["generator", "signal", "pivot_cut", "flag_share", "recall", "auc",
                         "base_rate"], "measured decisiveness")
    rows = df[np.isclose(df["pivot_cut"], pivot_cut)]
    if rows.empty:
        raise SchemaError(f"no rows at pivot cut {pivot_cut}")
    gens = sorted(rows["generator"].unique())
    fig, axes = plt.subplots(1, len(gens), figsize=WIDE, squeeze=False, sharey=True)
    parts = []
    for ax, gen in zip(axes[0], gens, strict=True):
        sub = rows[rows["generator"] == gen]
        for signal, s in sub.groupby("signal", sort=True):
            s = s.sort_values("flag_share")
            ax.plot(100 * s["flag_share"], s["recall"], marker="o", label=signal)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{gen}-generated (pivotal {pct(sub['base_rate'].iloc[0])})", fontsize=9)
        finish_axes(fig, ax, "% positions flagged (highest signal first)", "recall")
        aucs = sub.drop_duplicates("signal").sort_values("auc", ascending=False)
        parts.append(f"{gen}: AUC " + ", ".join(
            f"{r.signal} {r.auc:.2f}{_interval(r)}" if pd.notna(r.auc)
            else f"{r.signal} n/a (none pivotal)" for r in aucs.itertuples()))
    return fig, (f"Positions whose resampling changes success by ≥ {pivot_cut:g}, found by each "
                 "signal; " + "; ".join(parts) + ".")
