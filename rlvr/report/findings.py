"""The study's findings against this run: one row per finding, with a "reproduces?" verdict.

Every verdict is computed from the stages' metrics JSONs (`analysis`, `cross`, `decisive`,
`weighted`) by a
rule stated next to it: a finding is split into the parts the study claims, each part is
checked against this run's numbers (an interval must exclude the alternative where the
metrics have one), and the verdict is `yes` when every part holds, `partly` when some do, `no`
when none does and `n/a` when the metrics are missing. The rows go to the report's table and to
the `findings` metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

PAIR, SFT_PAIR, GENERATOR = "base__rl", "base__sft", "tuned"  # RL responses, as in the study
SMALL_BUDGET = 0.1  # cross-sampling claims are about budgets of at most 10% of the tokens


@dataclass(frozen=True)
class Finding:
    """One row of the study-vs-this-run table."""

    key: str
    finding: str
    study: str
    this_run: str
    reproduces: str  # yes | partly | no | n/a
    rule: str  # how `reproduces` was decided


def verdict(parts: list[bool]) -> str:
    """yes if every part holds, no if none does, partly otherwise."""
    return "yes" if all(parts) else "no" if not any(parts) else "partly"


def _p(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _pts(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _stats(metrics: dict, pair: str = PAIR) -> dict:
    return metrics.get("pairs", {}).get(pair, {}).get(GENERATOR, {})


def sparsity(analysis: dict) -> tuple[str, str]:
    s = _stats(analysis)
    above = s["share_js_above_0.01"]
    return (f"JS > 0.01 at {_p(above)} of positions (JS > 0.1: {_p(s['share_js_above_0.1'])})",
            "yes" if above <= 0.17 else "partly" if above <= 0.5 else "no")


def entropy(analysis: dict) -> tuple[str, str]:
    s = _stats(analysis)
    low, high = s["other_share_high_entropy"], s["divergent_share_high_entropy"]
    return (f"high base entropy at {_p(low)} of low-JS and {_p(high)} of divergent positions "
            "(20% of all by definition)", verdict([low <= 0.2, 0.2 < high < 0.8]))


def position(analysis: dict) -> tuple[str, str]:
    s = _stats(analysis)
    first, middle, last = (s[f"mean_js_{k}"] for k in ("first_bin", "middle_bins", "last_bin"))
    return (f"mean JS first / middle / last bin {first:.3f} / {middle:.3f} / {last:.3f}",
            verdict([first > middle, last > middle]))


def reallocation(analysis: dict) -> tuple[str, str]:
    s = _stats(analysis)
    top3, low = s["divergent_share_top1_in_base_top3"], s["divergent_share_base_prob_below_low"]
    return (f"divergent: RL top-1 is base top-1 {_p(s['divergent_share_top1_is_base_top1'])}, "
            f"in base top-3 {_p(top3)}, base prob < 0.01 {_p(low)}",
            verdict([top3 >= 0.8, low <= 0.1]))


def token_identity(analysis: dict) -> tuple[str, str]:
    s = _stats(analysis)
    top, base = s["identity_top5_share_divergent"], s["share_js_above_0.1"]
    return (f"the 5 tokens of highest mean JS are divergent at {_p(top)} of their occurrences "
            f"vs {_p(base)} of all positions",
            "yes" if top >= 2 * base else "partly" if top > base else "no")


def evolution(analysis: dict) -> tuple[str, str]:
    steps = sorted((v for v in analysis.get("checkpoints", {}).values()
                    if v.get("rl_step") is not None), key=lambda v: v["rl_step"])
    if len(steps) < 2:
        raise KeyError("fewer than two RL checkpoints")
    a, b = steps[0], steps[-1]
    jaccards = [v["jaccard_with_final"] for v in steps]
    return (f"steps {a['rl_step']}->{b['rl_step']}: JS p95 {a['js_p95']:.3f}->{b['js_p95']:.3f}, "
            f"p99 {a['js_p99']:.3f}->{b['js_p99']:.3f}, p50 {a['js_p50']:.3f}->"
            f"{b['js_p50']:.3f}; Jaccard with final " + " -> ".join(f"{j:.2f}" for j in jaccards),
            verdict([b["js_p95"] > a["js_p95"],
                     b["js_p99"] - a["js_p99"] > b["js_p50"] - a["js_p50"],
                     jaccards[-1] > jaccards[0]]))


def sft_control(analysis: dict) -> tuple[str, str]:
    rl, sft = _stats(analysis), _stats(analysis, SFT_PAIR)
    return (f"JS > 0.1 at {_p(sft['share_js_above_0.1'])} (SFT) vs {_p(rl['share_js_above_0.1'])}"
            f" (RL); top-decile JS mass {_p(sft['top_decile_js_mass'])} vs "
            f"{_p(rl['top_decile_js_mass'])}",
            verdict([sft["share_js_above_0.1"] > rl["share_js_above_0.1"],
                     sft["top_decile_js_mass"] < rl["top_decile_js_mass"]]))


def _cross(cross: dict, direction: str) -> tuple[str, str]:
    d = cross[direction]
    small = sorted((float(k), v) for k, v in d["budgets"].items() if float(k) <= SMALL_BUDGET)
    if not small or not all("js" in v and "minus_random_low" in v["js"] for _, v in small):
        raise KeyError(f"no js/random budgets <= {SMALL_BUDGET} in {direction}")
    forward = direction == "forward"
    beats = [v["js"]["minus_random_low"] > 0 if forward else v["js"]["minus_random_high"] < 0
             for _, v in small]
    target, top = d["half_target"], small[-1][1]
    half = top["js"]["accuracy"] >= target if forward else top["js"]["accuracy"] <= target
    text = "; ".join(f"{100 * b:g}% (achieved {_p(v['js']['achieved_budget'])}): js "
                     f"{_p(v['js']['accuracy'])} vs random {_p(v['random']['accuracy'])}, "
                     f"js − random {_pts(v['js']['minus_random'])} "
                     f"[{_pts(v['js']['minus_random_low'])}, {_pts(v['js']['minus_random_high'])}]"
                     for b, v in small)
    return (f"primary alone {_p(d['accuracy_primary'])}, intervention alone "
            f"{_p(d['accuracy_intervention'])}; {text}", verdict([any(beats), half]))


def cross_forward(cross: dict) -> tuple[str, str]:
    return _cross(cross, "forward")


def cross_backward(cross: dict) -> tuple[str, str]:
    return _cross(cross, "backward")


def weighted(results: dict) -> tuple[str, str]:
    k3 = {("high" if v["alpha"] > 0 else "low"): (name, v) for name, v in results.items()
          if isinstance(v, dict) and v.get("divergence") == "k3_old" and not v.get("normalize")}
    if set(k3) != {"high", "low"}:
        raise KeyError("no k3_old high and low variants")
    power = results.get("power", {})
    parts = [f"{name} {_pts(v['diff'])} [{_pts(v['paired_ci_low'])}, "
             f"{_pts(v['paired_ci_high'])}]" for name, v in k3.values()]
    return (f"baseline {_p(results['baseline']['accuracy_mean'])}; " + ", ".join(parts) +
            f" points (paired 95% CI, {power.get('n_seeds')} seeds); detectable effect "
            f"{_pts(power.get('mde_paired'))} points",
            verdict([(v["paired_ci_low"] or -1) > 0 for _, v in k3.values()]))


def critical(decisive: dict) -> tuple[str, str]:
    d = decisive["generators"][GENERATOR]  # RL-generated responses, measured by resampling
    share, auc = d["share_pivotal"], d["js_auc"]

    def ci(key: str, fmt) -> str:  # the stage's 95% interval, when it gave one
        lo, hi = d.get(f"{key}_low"), d.get(f"{key}_high")
        return "" if lo is None or hi is None else f" [{fmt(lo)}, {fmt(hi)}]"

    measured = (f" ({d['n_measured']} of {d['n_positions']} positions measured)"
                if "n_measured" in d else "")
    if share == 0:  # "no" only when the interval also rules out the study's few percent
        text = (f"no RL-generated position moves success by >= {d['pivot_cut']:g} when "
                f"resampled: share 0%{ci('share_pivotal', _p)}{measured}")
        if (d.get("share_pivotal_high") or 1.0) < 0.01:
            return text, "no"
        raise KeyError(f"{text}; too few positions measured to rule out a few percent")
    if any(d[k] is None for k in ("js_auc", "abs_delta_auc", "entropy_base_auc", "js_recall")):
        raise KeyError("decisive: no pivotal position measured (AUCs undefined)")
    return (f"{_p(share)}{ci('share_pivotal', _p)} of RL-generated positions move success by "
            f">= {d['pivot_cut']:g} when resampled{measured}; JS finds them with AUC {auc:.2f}"
            f"{ci('js_auc', lambda x: f'{x:.2f}')} (recall {_p(d['js_recall'])} flagging "
            f"{_p(d['flag_share'])}; |Δ| {d['abs_delta_auc']:.2f}, base entropy "
            f"{d['entropy_base_auc']:.2f})",
            verdict([share <= 0.1, auc >= 0.8]))


# (key, finding, the study's claim, which metrics, the check, its rule in words)
FINDINGS: tuple[tuple[str, str, str, str, Callable[[dict], tuple[str, str]], str], ...] = (
    ("sparsity", "Sparsity", ">83% (DAPO) / >98% (SimpleRL) of positions near-zero JS",
     "analysis", sparsity, "yes if JS > 0.01 at <= 17% of positions, partly if <= 50%"),
    ("entropy", "Entropy", "low-JS positions mostly low base entropy; divergent ones span both",
     "analysis", entropy, "low-JS high-entropy share <= 20% and divergent share in (20%, 80%)"),
    ("position", "Position", "JS highest at the start, lowest in the middle, rises at the end",
     "analysis", position, "first bin > middle, last bin > middle"),
    ("reallocation", "Mass reallocation", "RL top-1 within base top-3 at >80-90%; ~5% has "
     "base prob < 0.01", "analysis", reallocation, "top-3 share >= 80% and low-prob <= 10%"),
    ("token_identity", "Token identity", "divergence is targeted at specific tokens",
     "analysis", token_identity, "yes if the top-5 tokens by mean JS are divergent at >= 2x the "
     "base rate of JS > 0.1, partly if above it"),
    ("evolution", "Checkpoint evolution", "JS rises, p95/p99 faster than the rest, Jaccard with "
     "final -> 1", "analysis", evolution, "p95 rises, p99 rises more than p50, Jaccard rises"),
    ("sft_control", "SFT vs RL", "SFT shifts are denser and more spread out", "analysis",
     sft_control, "SFT JS > 0.1 share above RL's, SFT top-decile mass below RL's"),
    ("cross_forward", "Cross-sampling forward (<= 10%)", "base 8.2% -> >44% at 7.8% of tokens",
     "cross", cross_forward, "js − random CI > 0 at some budget <= 10%; js at the largest such "
     "budget recovers >= half the gain"),
    ("cross_backward", "Cross-sampling backward (<= 10%)", "RL 44.8% -> <8.5% at 10.1% of "
     "tokens", "cross", cross_backward, "js − random CI < 0 at some budget <= 10%; js at the "
     "largest such budget loses >= half the gain"),
    ("critical", "Sparse but critical (measured)", "a few percent of tokens carry the gain, and "
     "they are the divergent ones", "decisive", critical, "share of positions whose resampling "
     "moves success by the pivot cut <= 10% and JS AUC at finding them >= 0.8"),
    ("weighted", "Divergence-weighted advantage", "DAPO 42.5, low-KL boost 44.9, high-KL boost "
     "45.1 (3 runs)", "weighted", weighted, "paired CI of k3 high and low boost minus baseline "
     "> 0 (yes: both, partly: one)"),
)


def study_findings(metrics: dict[str, dict | None]) -> list[Finding]:
    """Every finding of `FINDINGS`, checked against `metrics` (name -> JSON or None)."""
    rows = []
    for key, finding, study, source, check, rule in FINDINGS:
        data = metrics.get(source)
        try:
            if data is None:
                raise KeyError(f"no {source} metrics")
            this_run, reproduces = check(data)
        except KeyError as err:  # the stage did not produce it (or an older writer)
            this_run, reproduces = f"not measured ({err.args[0]})", "n/a"
        rows.append(Finding(key, finding, study, this_run, reproduces, rule))
    return rows


def findings_metrics(rows: list[Finding]) -> dict[str, dict[str, str]]:
    """The rows as the `findings` metrics: key -> reproduces, this_run, rule."""
    return {r.key: {k: v for k, v in asdict(r).items() if k in ("reproduces", "this_run", "rule")}
            for r in rows}
