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
NOT_RUN = {"weighted": "opt-in training runs not asked for (params.yaml `weighted_variants`, "
                       "or `rlvr init --weighted`)"}


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


def _f2(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _stats(metrics: dict, pair: str | None = None) -> dict:
    """One pair's numbers on its tuned model's responses; the study's RL pair by default."""
    pair = pair or metrics.get("rl_pair", PAIR)
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
        raise KeyError("needs two RL checkpoints or more, the study has fewer; a pair "
                       "workspace takes them as `rlvr init --checkpoint STEP=PATH`")
    a, b = steps[0], steps[-1]
    jaccards = [v["jaccard_with_final"] for v in steps]
    return (f"steps {a['rl_step']}->{b['rl_step']}: JS p95 {a['js_p95']:.3f}->{b['js_p95']:.3f}, "
            f"p99 {a['js_p99']:.3f}->{b['js_p99']:.3f}, p50 {a['js_p50']:.3f}->"
            f"{b['js_p50']:.3f}; Jaccard with final " + " -> ".join(f"{j:.2f}" for j in jaccards),
            verdict([b["js_p95"] > a["js_p95"],
                     b["js_p99"] - a["js_p99"] > b["js_p50"] - a["js_p50"],
                     jaccards[-1] > jaccards[0]]))


def sft_control(analysis: dict) -> tuple[str, str]:
    if "sft_pair" in analysis and analysis["sft_pair"] is None:
        raise KeyError("needs an SFT control from the same base, the study has none; a pair "
                       "workspace takes one as `rlvr init --sft NAME=PATH`")
    rl, sft = _stats(analysis), _stats(analysis, analysis.get("sft_pair", SFT_PAIR))
    return (f"JS > 0.1 at {_p(sft['share_js_above_0.1'])} (SFT) vs {_p(rl['share_js_above_0.1'])}"
            f" (RL); top-decile JS mass {_p(sft['top_decile_js_mass'])} vs "
            f"{_p(rl['top_decile_js_mass'])}",
            verdict([sft["share_js_above_0.1"] > rl["share_js_above_0.1"],
                     sft["top_decile_js_mass"] < rl["top_decile_js_mass"]]))


def _cross(cross: dict, direction: str) -> tuple[str, str]:
    d = cross[direction]
    small = sorted((float(k), v) for k, v in d["budgets"].items()
                   if float(k) <= SMALL_BUDGET and "js" in v)
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
    needed = power.get("seeds_for_study_effect")
    grid = "" if needed is None else (f"; {needed} paired seeds would detect "
                                      f"{_pts(power['study_effect'])} points")
    return (f"baseline {_p(results['baseline']['accuracy_mean'])}; " + ", ".join(parts) +
            f" points (paired 95% CI, {power.get('n_seeds')} seeds); detectable effect "
            f"{_pts(power.get('mde_paired'))} points" + grid,
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


def concentration(analysis: dict) -> tuple[str, str]:
    s = _stats(analysis)
    gini, half = s["js_gini"], s["share_positions_holding_0.5_js"]
    if gini is None:
        raise KeyError("no JS mass: every position has JS 0")
    return (f"Gini {gini:.3f}; 50% of JS mass in {_p(half)} of positions (80%: "
            f"{_p(s.get('share_positions_holding_0.8_js'))}, 90%: "
            f"{_p(s.get('share_positions_holding_0.9_js'))})",
            verdict([gini >= 0.9, half <= 0.08]))


FAILURE_SUMMARIES = {"max_js": "max", "mean_js": "mean", "mean_js_first": "first-N mean"}


def failure(analysis: dict) -> tuple[str, str]:
    s = _stats(analysis)
    aucs = {k: (s[f"failure_auroc_{k}"], s[f"failure_auroc_low_{k}"],
                s[f"failure_auroc_high_{k}"]) for k in FAILURE_SUMMARIES}
    if all(a is None for a, _, _ in aucs.values()):
        raise KeyError("no AUROC: the RL responses are all correct or all wrong")
    text = ", ".join(f"{name} {_f2(a)} [{_f2(lo)}, {_f2(hi)}]" for (a, lo, hi), name in
                     zip(aucs.values(), FAILURE_SUMMARIES.values(), strict=True))
    above = [lo is not None and lo > 0.5 for _, lo, _ in aucs.values()]
    points = [a is not None and a > 0.5 for a, _, _ in aucs.values()]
    return (f"AUROC of response JS for reward 0: {text}",
            "yes" if any(above) else "partly" if any(points) else "no")


def _small_points(d: dict, rule: str) -> list[tuple[float, dict]]:
    return sorted((float(b), v[rule]) for b, v in d["budgets"].items()
                  if float(b) <= SMALL_BUDGET and rule in v)


def signed_gap(cross: dict) -> tuple[str, str]:
    d = cross["forward"]
    half = {r: d["half_gain"].get(r, {}).get("budget_share")
            for r in ("gap_neg", "kl_tuned_base", "kl_base_tuned", "random")}
    points = [(b, v) for b, v in _small_points(d, "gap_neg") if "minus_random" in v]
    if half["gap_neg"] is None and not points:
        raise KeyError("no forward gap_neg cells")
    text = "; ".join(f"{100 * b:g}%: {_pts(v['minus_random'])} [{_pts(v['minus_random_low'])}, "
                     f"{_pts(v['minus_random_high'])}]" for b, v in points)
    need = "half of the gain at " + ", ".join(f"{r} {_p(x)}" for r, x in half.items())
    inf = float("inf")
    return (f"{need}; gap_neg − random {text}",
            verdict([any(v["minus_random_low"] > 0 for _, v in points),
                     (half["gap_neg"] or inf) <= (half["kl_tuned_base"] or inf)]))


def extrapolation(cross: dict) -> tuple[str, str]:
    arms = {a: v for a, v in cross.items() if isinstance(v, dict) and v.get("alpha")}
    if not arms:
        raise KeyError("no extrapolation arm")
    parts, gated = [], []
    for arm, d in sorted(arms.items()):
        cells = [(float(b), r, v) for b, rules in d["budgets"].items() for r, v in rules.items()
                 if "minus_tuned" in v and r != "random"]
        gated += [v for _, r, v in cells if r == "gap_neg"] or [v for _, _, v in cells]
        best = max(cells, key=lambda c: c[2]["minus_tuned"], default=None)
        note = arm if d["direction"] != "extrapolate" else f"α {d['alpha']:g}"
        if d["direction"] == "extrapolate":
            note += f": tuned alone {_p(d['accuracy_primary'])}"
        if best:
            b, r, v = best
            note += (f", best {r} at {100 * b:g}% {_pts(v['minus_tuned'])} "
                     f"[{_pts(v['minus_tuned_low'])}, {_pts(v['minus_tuned_high'])}]")
        every = d.get("all", {})
        if "minus_tuned" in every:
            note += (f", every position {_pts(every['minus_tuned'])} "
                     f"[{_pts(every['minus_tuned_low'])}, {_pts(every['minus_tuned_high'])}]")
        parts.append(note)
    return ("; ".join(parts) + " points",
            "yes" if any(v["minus_tuned_low"] > 0 for v in gated)
            else "partly" if any(v["minus_tuned"] > 0 for v in gated) else "no")


def shortcuts(cross: dict) -> tuple[str, str]:
    overlap = cross["shortcuts"]["gate_overlap"]["forward"]
    jaccard = sorted((float(b), v["kl_sym_topk"]["jaccard_with_js"]) for b, v in overlap.items()
                     if float(b) <= SMALL_BUDGET)
    exact = [(arm, float(b), r, v) for arm, d in cross.items()
             if isinstance(d, dict) and d.get("top_k") for b, rules in d["budgets"].items()
             for r, v in rules.items() if "minus_exact" in v]
    if not jaccard or not exact:
        raise KeyError("no forward gate overlap or top-K arm")
    text = ", ".join(f"{j:.2f} at {100 * b:g}%" for b, j in jaccard)
    diffs = "; ".join(f"{arm} {r} at {100 * b:g}% {_pts(v['minus_exact'])} "
                      f"[{_pts(v['minus_exact_low'])}, {_pts(v['minus_exact_high'])}]"
                      for arm, b, r, v in sorted(exact, key=lambda e: e[:3]))
    return (f"Jaccard of the top-K ½(KL+RKL) gate with JS {text}; top-K mixing minus exact "
            f"js: {diffs}",
            verdict([all(v["minus_exact_low"] <= 0 <= v["minus_exact_high"]
                         for *_, v in exact), min(j for _, j in jaccard) >= 0.5]))


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
    ("concentration", "Concentration of the shift", "Gini of the divergence 0.936, ~1-8% of "
     "tokens carry it (RRTokenIntervention)", "analysis", concentration,
     "Gini of JS >= 0.9 and 50% of the JS mass in <= 8% of positions"),
    ("failure", "Divergence predicts failure", "divergence ranks failing responses above "
     "correct ones (RRTokenIntervention, AUROC)", "analysis", failure, "yes if the 95% CI "
     "of an AUROC (max, mean or first-N mean JS per response) is above 0.5, partly if only "
     "its point is"),
    ("signed_gap", "Signed-gap gate (forward)", "neg_logp reaches RL accuracy replacing ~5% "
     "of tokens, KL needs ~14%, random ~19.7 at ~19% (companion, AIME24)", "cross", signed_gap,
     "gap_neg − random CI > 0 at some budget <= 10%; gap_neg's half-gain budget <= "
     "KL(tuned‖base)'s"),
    ("extrapolation", "Selective extrapolation beats the tuned model", "RL alone -> "
     "extrapolated 46.15 -> 47.50, 52.50 -> 55.42, 54.58 -> 55.83 (companion, AIME24)",
     "cross", extrapolation, "yes if extrapolation gated by gap_neg (else any gate) minus the "
     "tuned model alone has a paired 95% CI above 0 at some alpha and budget, partly if only "
     "a point estimate is (no correction over the alpha x budget cells)"),
    ("shortcuts", "The companion's shortcuts change nothing", "top-50 mixing and its ½(KL+RKL) "
     "gate stand in for exact mixing and JS (assumed, not measured)", "cross", shortcuts,
     "every top-K minus exact CI contains 0, and the top-K gate's positions overlap JS's with "
     "Jaccard >= 0.5 at every budget <= 10%"),
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
                raise KeyError(NOT_RUN.get(source, f"no {source} metrics"))
            this_run, reproduces = check(data)
        except KeyError as err:  # the stage did not produce it (or an older writer)
            this_run, reproduces = f"not measured ({err.args[0]})", "n/a"
        rows.append(Finding(key, finding, study, this_run, reproduces, rule))
    return rows


def findings_metrics(rows: list[Finding]) -> dict[str, dict[str, str]]:
    """The rows as the `findings` metrics: key -> reproduces, this_run, rule."""
    return {r.key: {k: v for k, v in asdict(r).items() if k in ("reproduces", "this_run", "rule")}
            for r in rows}
