"""Study vs this run: each finding of the study, this run's numbers, and whether it reproduces.

Every verdict follows a rule stated in its row (`criterion`), applied to the stage outputs, so
the table is the same for the toy pair, the real pair or a user's pair, and says `no` as readily
as `yes`. `partly` means one half of a two-part finding holds; `n/a` that the input is missing.
All shares are over the RL model's own responses (the study's choice) unless the row says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

Row = tuple[str, str, str, str, str]  # finding, study, this run, reproduces?, criterion
TABLE_COLUMNS = ["finding", "study (Qwen2.5-32B, AIME24)", "this run", "reproduces?",
                 "criterion"]
SMALL_BUDGET = 0.25  # "few tokens": at most this share of a response's tokens switched


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _verdict(first: bool, second: bool | None = None) -> str:
    if second is None:
        return "yes" if first else "no"
    return "yes" if first and second else "partly" if first or second else "no"


def _sparsity(h: dict) -> Row:
    near_zero = 1 - h["share_js_above_0.01"]
    return ("sparsity: positions with near-zero JS", "> 83% (DAPO), > 98% (SimpleRL)",
            f"{_pct(near_zero)} have JS <= 0.01; {_pct(1 - h['share_js_above_0.1'])} <= 0.1",
            "yes" if near_zero >= 0.83 else "partly" if near_zero >= 0.5 else "no",
            "yes: JS <= 0.01 at >= 83% of positions; partly: >= 50%")


def _entropy(h: dict) -> Row:
    div, other = h["divergent_share_high_entropy"], h["other_share_high_entropy"]
    return ("entropy: low-JS positions mostly low base entropy; divergent ones span both",
            "yes (qualitative)",
            f"high-entropy share: divergent {_pct(div)}, others {_pct(other)}",
            _verdict(other < 0.5 and div > other, 0.1 <= div <= 0.9),
            "low-JS positions < 50% high-entropy and below the divergent ones; divergent "
            "positions 10-90% high-entropy (both kinds present)")


def _position(h: dict) -> Row:
    first, mid, last = (h.get(k, math.nan) for k in ("mean_js_first_bin", "mean_js_middle_bins",
                                                      "mean_js_last_bin"))
    return ("position: highest at the start, lowest in the middle, a little higher at the end",
            "start > middle < end",
            f"mean JS start {first:.4f}, middle {mid:.4f}, end {last:.4f}",
            _verdict(first > mid, last > mid),
            "start bin above the middle bins; end bin above them (first/last 10% of a "
            "response)")


def _reallocation(h: dict) -> Row:
    top3 = h["divergent_share_top1_in_base_top3"]
    low = h["divergent_share_base_prob_below_low"]
    top1 = h["divergent_share_top1_is_base_top1"]
    return ("reallocation (JS > 0.1): RL re-ranks base candidates",
            "~30% RL top-1 = base top-1; > 80-90% in base top-3; ~5% base prob < 0.01",
            f"{_pct(top1)} = base top-1, {_pct(top3)} in base top-3, {_pct(low)} base p < 0.01",
            _verdict(top3 >= 0.8, low <= 0.1),
            "RL top-1 within base top-3 at >= 80% of divergent positions; base prob < 0.01 at "
            "<= 10%")


PER_PAIR: list[tuple[Callable[[dict], Row], list[str]]] = [
    (_sparsity, ["share_js_above_0.01", "share_js_above_0.1"]),
    (_entropy, ["divergent_share_high_entropy", "other_share_high_entropy"]),
    (_position, ["mean_js_first_bin", "mean_js_middle_bins", "mean_js_last_bin"]),
    (_reallocation, ["divergent_share_top1_in_base_top3", "divergent_share_base_prob_below_low",
                     "divergent_share_top1_is_base_top1"]),
]


def _identity(roles: pd.DataFrame | None) -> Row:
    if roles is None or roles.empty:
        return ("token identity: the shift sits on few, decisive token kinds", "qualitative",
                "no role labels", "n/a", "needs score.label_roles")
    shares = dict(zip(roles["role"], roles["share_divergent"], strict=True))
    decisive = roles[roles["is_decisive"]]
    top = decisive.sort_values("share_divergent").iloc[-1] if len(decisive) else None
    other = shares.get("other", math.nan)
    text = ", ".join(f"{r} {_pct(s)}" for r, s in sorted(shares.items(), key=lambda x: -x[1]))
    ok = top is not None and top["share_divergent"] > 0 and top["share_divergent"] >= 2 * other
    return ("token identity: the shift sits on few, decisive token kinds",
            "qualitative (forking / reasoning tokens)", f"divergent share by role: {text}",
            "yes" if ok else "no",
            "the most divergent decisive role is divergent at >= 2x the rate of `other` tokens")


def _evolution(evo: pd.DataFrame | None) -> Row:
    what = "checkpoint evolution: JS grows (p95/p99 faster), divergent set converges to final"
    if evo is None or len(evo) < 2:
        return (what, "rises; Jaccard -> 1", "fewer than 2 checkpoints", "n/a",
                "needs RL checkpoints")
    evo = evo.sort_values("rl_step", na_position="last")
    p95, jac = evo["js_p95"].tolist(), evo["jaccard_with_final"].tolist()
    rising = p95[-1] > p95[0] and all(b >= a for a, b in zip(p95, p95[1:], strict=False))
    converging = jac[-1] > jac[0] and all(b >= a for a, b in zip(jac, jac[1:], strict=False))
    return (what, "rises; Jaccard -> 1",
            "p95 " + " -> ".join(f"{x:.3f}" for x in p95) + "; Jaccard "
            + " -> ".join(f"{x:.2f}" for x in jac), _verdict(rising, converging),
            "JS p95 rises over checkpoints, never falling; so does the Jaccard with the final set")


def _controls(ctl: pd.DataFrame | None) -> Row:
    what = "SFT vs RL: SFT's shift is denser and more spread out"
    if ctl is None or not {"rl", "sft"} <= set(ctl["tuned_kind"]):
        return (what, "SFT denser", "no SFT pair", "n/a", "needs an sft model")
    by = ctl[ctl["generator"] == "tuned"].set_index("tuned_kind")
    rl, sft = by.loc["rl"], by.loc["sft"]
    return (what, "SFT denser, more spread",
            f"JS > 0.01: SFT {_pct(sft['share_above_001'])} vs RL {_pct(rl['share_above_001'])};"
            f" top-decile JS mass SFT {_pct(sft['top_decile_js_mass'])} vs RL "
            f"{_pct(rl['top_decile_js_mass'])}",
            _verdict(sft["share_above_001"] > rl["share_above_001"],
                     sft["top_decile_js_mass"] < rl["top_decile_js_mass"]),
            "denser: more positions with JS > 0.01; spread: less JS mass in the top decile "
            "(own responses)")


def _cross(curve: pd.DataFrame | None, direction: str) -> Row:
    forward = direction == "forward"
    what = ("cross-sampling forward: base + RL at divergent tokens recovers RL's accuracy"
            if forward else "cross-sampling backward: RL + base at divergent tokens loses it")
    study = ("8.2% -> > 44% switching 7.8% of tokens" if forward
             else "44.8% -> < 8.5% switching 10.1% of tokens")
    if curve is None or direction not in set(curve["direction"]):
        return (what, study, "not run", "n/a", "needs the cross_sample stage")
    d = curve[curve["direction"] == direction]
    acc0 = float(d.loc[d["budget_share"] == 0.0, "accuracy"].iloc[0])
    acc1 = float(d.loc[d["budget_share"] == 1.0, "accuracy"].iloc[0])
    half = acc0 + 0.5 * (acc1 - acc0)
    js = d[(d["rule"] == "js") & (d["budget_share"] > 0) & (d["budget_share"] <= SMALL_BUDGET)]
    reach = js[js["accuracy"] >= half] if forward else js[js["accuracy"] <= half]
    rand = d[d["rule"] == "random"].set_index("matched_threshold")
    beats, shown = False, "no js point within the small budget"
    if len(js):
        best = js.sort_values("accuracy", ascending=not forward).iloc[0]
        r = rand.loc[best["threshold"]] if best["threshold"] in rand.index else None
        r_acc = float(r["accuracy"]) if r is not None else math.nan
        shown = (f"{_pct(acc0)} -> {_pct(best['accuracy'])} at {_pct(best['budget_share'])} "
                 f"switched (random at that budget {_pct(r_acc)}; "
                 f"{'RL' if forward else 'base'} alone {_pct(acc1)})")
        if r is not None:
            beats = (best["accuracy_low"] > r_acc) if forward else (best["accuracy_high"] < r_acc)
    return (what, study, shown, _verdict(len(reach) > 0 and acc1 != acc0, beats),
            f"a JS threshold switching <= {SMALL_BUDGET:.0%} of tokens gets half-way to the "
            "other model's accuracy; its 95% CI excludes random positions at the same budget")


def verdict_table(
    headline: dict | None, roles: pd.DataFrame | None, evolution: pd.DataFrame | None,
    controls: pd.DataFrame | None, cross_curve: pd.DataFrame | None,
    pair: str = "base__rl", generator: str = "tuned",
) -> pd.DataFrame:
    """One row per finding (see TABLE_COLUMNS); inputs are the analyze and cross_sample outputs
    (analysis.json, agg_roles, agg_checkpoint_evolution, agg_family_comparison, the cross
    curve), each optional."""
    h = (headline or {}).get("pairs", {}).get(pair, {}).get(generator, {})
    rows: list[Row] = []
    for fn, keys in PER_PAIR:
        absent = [k for k in keys if not isinstance(h.get(k), int | float)]
        # e.g. no divergent position at all: the reallocation shares are not defined
        rows.append((fn.__name__.strip("_"), "", f"not measured: {', '.join(absent)}", "n/a",
                     "") if absent else fn(h))
    if roles is not None:
        roles = roles[(roles["pair"] == pair) & (roles["generator"] == generator)]
    rows.append(_identity(roles))
    rows.append(_evolution(evolution))
    rows.append(_controls(controls))
    rows += [_cross(cross_curve, d) for d in ("forward", "backward")]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
