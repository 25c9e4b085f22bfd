"""The report's figures: one function per figure, DataFrame in, (Figure, caption) out.

Every function checks that its input has the columns it needs (`SchemaError` names the missing
ones), draws with matplotlib's Agg backend, and returns a one-line caption that states what the
figure shows and the numbers behind it, computed from the same DataFrame. Numbers in captions
are shares in percent with one decimal unless stated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")  # headless: the report is rendered in a pipeline stage, never on screen

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

LN2 = math.log(2.0)
WIDE = (8.0, 3.6)
PAIR_COLOURS = {"rl": "C3", "sft": "C0", "rft": "C2"}


class SchemaError(ValueError):
    """An input table lacks columns a figure needs (a producer and the report disagree)."""


def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise SchemaError naming the columns of `what` that `df` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{what}: missing columns {missing}; has {sorted(df.columns)}")


def pct(x: float) -> str:
    """A share as a percentage with one decimal, e.g. 0.1234 -> '12.3%'."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def group_label(row: pd.Series | tuple, keys: list[str]) -> str:
    values = [row[k] for k in keys] if isinstance(row, pd.Series) else list(row)
    return "/".join(str(v) for v in values)


def split_groups(df: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(label, sub-frame) per group in sorted key order; one unlabelled group when no keys."""
    keys = [k for k in keys if k in df.columns]
    if not keys:
        return [("all", df)]
    out = []
    for key, sub in df.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((group_label(key, keys), sub))
    return out


def style_axes(sub: pd.DataFrame) -> dict[str, str]:
    """Line style of a (pair, generator) group: colour by tuned model, dashed for base responses.

    Colours are fixed per tuned-model name so a pair looks the same in every figure.
    """
    pair = str(sub["pair"].iloc[0]) if "pair" in sub.columns else ""
    tuned = pair.split("__")[-1]
    colour = PAIR_COLOURS.get(tuned, f"C{sum(map(ord, tuned)) % 10}")
    dashed = "generator" in sub.columns and sub["generator"].iloc[0] == "base"
    return {"color": colour, "linestyle": "--" if dashed else "-"}


def finish_axes(fig: Figure, ax, xlabel: str, ylabel: str, legend: bool = True) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()


# --- §1 token-level distribution shift --------------------------------------------------------


def js_histogram(hist: pd.DataFrame) -> tuple[Figure, str]:
    """Distribution of JS per (pair, generator) over log-spaced bins.

    hist: pair, generator, js_lo, js_hi, n_positions (empty bins may be absent; the lowest bin
    also holds everything below it, exact zeros included).
    """
    require_columns(hist, ["pair", "generator", "js_lo", "js_hi", "n_positions"], "js histogram")
    fig, ax = plt.subplots(figsize=WIDE)
    parts = []
    for label, sub in split_groups(hist, ["pair", "generator"]):
        sub = sub.sort_values("js_lo")
        total = int(sub["n_positions"].sum())
        share = sub["n_positions"] / max(total, 1)
        mid = np.sqrt(sub["js_lo"] * sub["js_hi"])
        ax.plot(mid, 100 * share, drawstyle="steps-mid", marker=".", label=f"{label} (n={total:,})",
                **style_axes(sub))
        small = float(share[sub["js_hi"] <= 1e-3 * (1 + 1e-9)].sum())
        parts.append(f"{label} {pct(small)} below 1e-3")
    ax.set_xscale("log")
    finish_axes(fig, ax, "JS (nats, log scale)", "% positions")
    return fig, "JS per scored position, log scale; " + "; ".join(parts) + "."


def threshold_note(df: pd.DataFrame, value_col: str, keys: list[str], at: float) -> str:
    """'label x%' at the sweep threshold closest to `at`, per group."""
    thresholds = np.sort(df["threshold"].unique())
    tau = float(thresholds[np.argmin(np.abs(np.log(thresholds) - math.log(at)))])
    parts = []
    for label, sub in split_groups(df[np.isclose(df["threshold"], tau)], keys):
        parts.append(f"{label} {pct(float(sub[value_col].iloc[0]))}")
    return f"at JS > {tau:g}: " + ", ".join(parts)


def sparsity_curve(df: pd.DataFrame) -> tuple[Figure, str]:
    """Share of positions with JS above each threshold of the sweep.

    df: pair, generator, threshold, share_above.
    """
    require_columns(df, ["pair", "generator", "threshold", "share_above"], "sparsity")
    fig, ax = plt.subplots(figsize=WIDE)
    for label, sub in split_groups(df, ["pair", "generator"]):
        sub = sub.sort_values("threshold")
        ax.plot(sub["threshold"], 100 * sub["share_above"], marker="o", label=label,
                **style_axes(sub))
    ax.set_xscale("log")
    finish_axes(fig, ax, "threshold τ (JS, nats)", "% positions with JS > τ")
    notes = [threshold_note(df, "share_above", ["pair", "generator"], a) for a in (0.01, 0.1)]
    return fig, "Share of positions above each JS threshold; " + "; ".join(notes) + "."


def bin_labels(lo: pd.Series, hi: pd.Series, digits: int = 2) -> list[str]:
    """'[lo, hi)' labels; a missing or infinite bound is an open end."""
    def fmt(v: float) -> str:
        return "" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"
    return [f"<{fmt(h)}" if not fmt(lo_) else (f"≥{fmt(lo_)}" if not fmt(h) else
            f"{fmt(lo_)}–{fmt(h)}") for lo_, h in zip(lo.astype(float), hi.astype(float),
                                                      strict=True)]


def js_by_entropy(df: pd.DataFrame, binning: str = "fixed") -> tuple[Figure, str]:
    """Mean JS and share divergent per bin of base entropy (fixed or quantile bins).

    df: pair, generator, bin_index, entropy_lo, entropy_hi, n_positions, mean_js,
    share_divergent.
    """
    cols = ["pair", "generator", "bin_index", "entropy_lo", "entropy_hi", "n_positions",
            "mean_js", "share_divergent"]
    require_columns(df, cols, f"js by entropy ({binning} bins)")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=WIDE)
    parts, labels = [], []
    for label, sub in split_groups(df, ["pair", "generator"]):
        sub = sub.sort_values("bin_index")
        ax1.plot(sub["bin_index"], sub["mean_js"], marker="o", label=label, **style_axes(sub))
        ax2.plot(sub["bin_index"], 100 * sub["share_divergent"], marker="o", label=label,
                 **style_axes(sub))
        low, high = sub.iloc[0], sub.iloc[-1]
        parts.append(f"{label} mean JS {low['mean_js']:.3f} in the lowest-entropy bin vs "
                     f"{high['mean_js']:.3f} in the highest")
        if len(sub) > len(labels):
            labels = list(zip(sub["bin_index"], bin_labels(sub["entropy_lo"],
                                                             sub["entropy_hi"]), strict=True))
    for ax in (ax1, ax2):
        if binning == "fixed":
            ax.set_xticks([b for b, _ in labels], [t for _, t in labels], fontsize=6,
                          rotation=30)
    ax1.set_title("mean JS", fontsize=9)
    ax2.set_title("% divergent", fontsize=9)
    xlabel = "base entropy bin (nats)" if binning == "fixed" else "base-entropy quantile bin"
    finish_axes(fig, ax1, xlabel, "mean JS", legend=False)
    finish_axes(fig, ax2, xlabel, "% positions divergent")
    return fig, f"JS by base-model entropy, {binning} bins; " + "; ".join(parts) + "."


def js_by_position(norm: pd.DataFrame, edges: pd.DataFrame | None = None) -> tuple[Figure, str]:
    """Mean JS by normalised position bin, and at the first/last absolute positions.

    norm: pair, generator, bin_index, position_lo, position_hi, mean_js. edges (optional): pair,
    generator, anchor ('start'|'end'), token_offset (0 = first / last token), mean_js.
    """
    require_columns(norm, ["pair", "generator", "position_lo", "position_hi", "mean_js"],
                    "js by position")
    ncols = 1 if edges is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=WIDE, squeeze=False)
    parts = []
    for label, sub in split_groups(norm, ["pair", "generator"]):
        sub = sub.sort_values("position_lo")
        mid = (sub["position_lo"] + sub["position_hi"]) / 2
        axes[0, 0].plot(mid, sub["mean_js"], marker="o", label=label, **style_axes(sub))
        js = sub["mean_js"].to_numpy()
        parts.append(f"{label} start {js[0]:.3f} / middle {js[len(js) // 2]:.3f} / "
                     f"end {js[-1]:.3f}")
    axes[0, 0].set_title("normalised position t/len", fontsize=9)
    finish_axes(fig, axes[0, 0], "t / len", "mean JS", legend=edges is None)
    if edges is not None:
        require_columns(edges, ["pair", "generator", "anchor", "token_offset", "mean_js"],
                        "js at the first/last positions")
        ax = axes[0, 1]
        for label, sub in split_groups(edges, ["pair", "generator"]):
            first = sub[sub["anchor"] == "start"].sort_values("token_offset")
            last = sub[sub["anchor"] == "end"].sort_values("token_offset")
            ax.plot(first["token_offset"], first["mean_js"], marker="o", label=label,
                    **style_axes(sub))
            ax.plot(-1 - last["token_offset"], last["mean_js"], marker="s", **style_axes(sub))
        ax.axvline(-0.5, color="grey", lw=0.8)
        ax.set_title("first N (≥0) and last N (<0) tokens", fontsize=9)
        finish_axes(fig, ax, "offset from start / end", "mean JS")
    return fig, "Mean JS by position in the response (start / middle / end bin): " + \
        "; ".join(parts) + "."


def lorenz_curves(curve: pd.DataFrame, summary: pd.DataFrame) -> tuple[Figure, str]:
    """Lorenz curve of the JS mass per pair, one panel per generator, with the diagonal.

    curve: `agg_js_lorenz` rows (pair, generator, population_share, mass_share); summary:
    `agg_js_concentration` rows (pair, generator, gini, mass_share, share_positions).
    """
    require_columns(curve, ["pair", "generator", "population_share", "mass_share"], "Lorenz")
    require_columns(summary, ["pair", "generator", "gini", "mass_share", "share_positions"],
                    "concentration")
    generators = sorted(curve["generator"].unique())
    fig, axes = plt.subplots(1, len(generators), figsize=WIDE, squeeze=False, sharey=True)
    for ax, generator in zip(axes[0], generators, strict=True):
        for label, sub in split_groups(curve[curve["generator"] == generator], ["pair"]):
            sub = sub.sort_values("population_share")
            ax.plot(100 * sub["population_share"], 100 * sub["mass_share"], label=label,
                    **style_axes(sub))
        ax.plot([0, 100], [0, 100], color="grey", lw=0.8, ls=":")
        ax.set_title(f"{generator}-generated", fontsize=9)
        finish_axes(fig, ax, "% of positions (lowest JS first)", "% of JS mass")
    half = summary[np.isclose(summary["mass_share"], 0.5)]
    parts = [f"{r.pair}/{r.generator} Gini {r.gini:.3f}, 50% of the mass in "
             f"{pct(r.share_positions)} of positions"
             for r in half.sort_values(["pair", "generator"]).itertuples()]
    return fig, ("Lorenz curves of JS mass (RRTokenIntervention: Gini 0.936); "
                 + "; ".join(parts) + ".")


def failure_auroc(df: pd.DataFrame) -> tuple[Figure, str]:
    """AUROC of response-level JS summaries at predicting failure, with bootstrap intervals.

    df: `failure_prediction` rows (pair, generator, summary, auroc, auroc_low, auroc_high).
    """
    require_columns(df, ["pair", "generator", "summary", "auroc", "auroc_low", "auroc_high"],
                    "failure prediction")
    df = df.sort_values(["pair", "generator", "summary"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.0, 0.3 * len(df) + 1.2))
    y = np.arange(len(df))[::-1]
    colours = {s: f"C{i}" for i, s in enumerate(sorted(df["summary"].unique()))}
    for yi, r in zip(y, df.itertuples(), strict=True):
        ax.errorbar([r.auroc], [yi], xerr=[[r.auroc - r.auroc_low], [r.auroc_high - r.auroc]],
                    fmt="o", color=colours[r.summary], capsize=3)
    ax.axvline(0.5, color="grey", lw=1)
    ax.set_yticks(y, [f"{r.pair}/{r.generator} {r.summary}" for r in df.itertuples()],
                  fontsize=7)
    finish_axes(fig, ax, "AUROC for reward 0 (0.5: no signal)", "", legend=False)
    parts = []
    for (pair, generator), sub in df.dropna(subset=["auroc"]).groupby(["pair", "generator"]):
        best = sub.loc[sub["auroc"].idxmax()]
        parts.append(f"{pair}/{generator} best {best['summary']} {best['auroc']:.2f} "
                     f"[{best['auroc_low']:.2f}, {best['auroc_high']:.2f}]")
    return fig, ("How well a response's JS (max, mean, mean over its first positions) ranks "
                 "failed responses above correct ones (prompt-bootstrap 95%); "
                 + "; ".join(parts) + ".")
