"""The report's sections: one render function per section, from whatever inputs exist.

A section whose inputs are missing says which stage produces them; nothing is invented.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import pandas as pd
from matplotlib.figure import Figure

from rlvr.layout import Layout
from rlvr.report import comparison_figures as C
from rlvr.report import experiments as E
from rlvr.report import figures as F
from rlvr.report import viewer
from rlvr.report.blocks import (
    CHECKPOINT_PAIR,
    Block,
    Inputs,
    Note,
    Notice,
    ReportOptions,
    figure,
    finding_inputs,
    gain_table,
    headline_table,
    model_table,
    study_table,
    table,
)
from rlvr.report.cross_sections import render_cross
from rlvr.report.findings import study_findings
from rlvr.store.registry import TableIncomplete
from rlvr.weighted.grid import ACCURACY

# --- sections -------------------------------------------------------------------------------------

# the family's training logs (plots written by pretrain / sft / rl / evaluate)
TRAINING_LOGS = {  # panel -> (plot, the columns drawn)
    "pretrain loss": ("pretrain_loss", ["loss"]),
    "SFT / RFT loss": ("sft_loss", ["loss"]),
    "RL train reward": ("rl_log", ["reward_mean"]),  # its DAPO diagnostics: §8
    "RL checkpoint accuracy": ("rl_checkpoint_accuracy", ["accuracy"]),
}
IDENTITY_ROWS = 5  # token identity table: top tokens by mean JS per pair and generator

# analysis tables: data/analysis/<sql name>.parquet, written by the `analyze` stage
ANALYSES = {
    "histogram": "agg_js_histogram",
    "quantiles": "agg_js_quantiles",
    "sparsity": "agg_sparsity",
    "entropy_fixed": "agg_js_by_entropy_fixed",
    "entropy_quantile": "agg_js_by_entropy_quantile",
    "entropy_divergent": "agg_entropy_by_divergence",
    "position": "agg_js_by_position",
    "position_edges": "agg_js_by_position_edges",
    "topk": "agg_topk_overlap",
    "rank": "agg_rank_histogram",
    "reallocation": "agg_reallocation",
    "identity": "agg_token_identity",
    "evolution": "agg_checkpoint_evolution",
    "controls": "agg_family_comparison",
    "truncation": "agg_truncation",
    "correctness": "agg_correctness",
    "roles": "agg_roles",
    "role_pr": "agg_role_detection",
    "concentration": "agg_js_concentration",
    "lorenz": "agg_js_lorenz",
    "failure": "failure_prediction",
}


@dataclass(frozen=True)
class Section:
    """One report section: its anchor, title, what the study found, and how to render it."""

    anchor: str
    title: str
    intro: str
    render: Callable[[Inputs, ReportOptions], list[Block]]


def _analysis(inp: Inputs, key: str) -> tuple[pd.DataFrame | None, str]:
    """An analysis table without the RL-checkpoint pairs (they have their own section)."""
    stem = ANALYSES[key]
    df = inp.table(inp.layout.analysis_dir / f"{stem}.parquet")
    if df is not None and "pair" in df.columns and key != "evolution":
        df = df[~df["pair"].astype(str).str.contains(CHECKPOINT_PAIR)].reset_index(drop=True)
    return df, (Layout().analysis_dir / f"{stem}.parquet").as_posix()  # the workspace's name


FINDING_STAGES = {"analysis": "analyze", "cross": "cross_sample", "decisive": "decisive",
                  "weighted": "weighted_summary"}


def _render_findings(inp: Inputs, opt: ReportOptions) -> list[Block]:
    metrics = finding_inputs(inp)
    out = [Notice(f"{name} metrics (data/metrics/{name}.json): their findings read n/a",
                  FINDING_STAGES[name]) for name, m in metrics.items() if m is None]
    if len(out) == len(metrics):
        return out
    rows = pd.DataFrame([asdict(r) for r in study_findings(metrics)]).drop(columns="key")
    rows = rows.rename(columns={"this_run": "this run", "reproduces": "reproduces?",
                                "rule": "rule (from the metrics)"})
    return out + [table(rows, "Every finding of the study against this run, decided "
                        "from data/metrics/{analysis,cross,decisive,weighted}.json by the "
                        "stated rule (also written to data/metrics/findings.json).",
                        max_rows=40,
                        fold=False)]


def _render_family(inp: Inputs, opt: ReportOptions) -> list[Block]:
    out = []
    models = inp.json(inp.layout.metrics("models"))
    if models is None:
        out.append(Notice("model accuracies (data/metrics/models.json)", "evaluate"))
    else:
        out.append(figure(lambda: E.model_accuracies(model_table(models)), "model accuracies",
                           opt.params.dpi))
    gains = gain_table(inp.layout)
    if gains is not None:  # pairing by prompt: a much tighter interval than two separate ones
        out.append(table(gains, "Held-out accuracy minus the base's, paired by prompt "
                         "(data/samples rewards; 95% interval over prompts)."))
    curves = {}
    for name, (plot, columns) in TRAINING_LOGS.items():
        df = inp.csv(inp.layout.plot(plot))
        if df is not None:
            curves[name] = df[[c for c in ["step", *columns] if c in df.columns]]
    if curves:
        out.append(figure(lambda: E.training_curves(curves), "training curves", opt.params.dpi))
    else:
        out.append(Notice("training logs (data/plots/pretrain_loss.csv, rl_log.csv, ...)",
                          "pretrain"))
    headline = inp.json(inp.layout.metrics("analysis"))
    if headline is None:
        out.append(Notice("headline analysis metrics (data/metrics/analysis.json)",
                          "analyze"))
    else:
        out.append(table(study_table(headline), "The study's headline numbers next to "
                         "this run (base__rl pair, RL responses as in the study); shares in "
                         "[0, 1]."))
        out.append(table(headline_table(headline), "Headline numbers of the analyses per "
                         "pair/generator (data/metrics/analysis.json; RL checkpoints in §3).",
                         max_rows=60, fold=False))
    return out


def _missing(what: str, path: str) -> Notice:
    return Notice(f"{what} ({path})", "analyze")


def _render_shift(inp: Inputs, opt: ReportOptions) -> list[Block]:
    out = []
    for key, draw, what in (
        ("histogram", F.js_histogram, "JS histogram"),
        ("sparsity", F.sparsity_curve, "sparsity curve"),
        ("entropy_fixed", lambda d: F.js_by_entropy(d, "fixed"), "JS by base entropy"),
        ("entropy_quantile", lambda d: F.js_by_entropy(d, "quantile"), "JS by entropy quantile"),
        ("correctness", C.correct_vs_incorrect, "correct vs incorrect"),
    ):
        df, path = _analysis(inp, key)
        out.append(_missing(what, path) if df is None
                   else figure(lambda d=df, f=draw: f(d), what, opt.params.dpi))
    norm, path = _analysis(inp, "position")
    edges, _ = _analysis(inp, "position_edges")
    out.append(_missing("JS by position", path) if norm is None
               else figure(lambda: F.js_by_position(norm, edges), "JS by position",
                            opt.params.dpi))
    for key, what, caption in (
        ("quantiles", "JS quantiles", "JS quantiles and mean per pair and generator."),
        ("entropy_divergent", "base entropy of divergent positions",
         "Base entropy of divergent vs other positions, and their share of high-entropy "
         "(top-quantile) positions."),
        ("identity", "token identity", "Tokens by divergence: highest mean JS, and for frequent "
         "tokens the share of their occurrences that are divergent."),
    ):
        df, path = _analysis(inp, key)
        if df is not None and key == "identity":
            df = df[df["rank_by_mean_js"] <= IDENTITY_ROWS]
        if df is not None and key == "quantiles":
            df = _quantile_table(df)
        out.append(_missing(what, path) if df is None else table(df, caption, max_rows=40))
    return out + _render_concentration(inp, opt)


def _render_concentration(inp: Inputs, opt: ReportOptions) -> list[Block]:
    """Lorenz curves and Gini of the JS mass; how well response JS predicts failure."""
    out = []
    lorenz, path = _analysis(inp, "lorenz")
    summary, summary_path = _analysis(inp, "concentration")
    if lorenz is None or summary is None:
        out.append(_missing("concentration of JS mass", path))
    else:
        out.append(figure(lambda: F.lorenz_curves(lorenz, summary), "Lorenz curves",
                          opt.params.dpi))
        wide = summary.pivot_table(index=["pair", "generator", "n_positions", "gini"],
                                   columns="mass_share", values="share_positions")
        wide.columns = [f"positions holding {100 * q:g}%" for q in wide.columns]
        out.append(table(wide.reset_index(), "Concentration of JS mass: Gini coefficient "
                         "and the smallest share of positions holding each share of it "
                         f"({summary_path}).", max_rows=40))
    failure, path = _analysis(inp, "failure")
    out.append(_missing("failure prediction", path) if failure is None else figure(
        lambda: F.failure_auroc(failure), "failure prediction", opt.params.dpi))
    if failure is not None:
        out.append(table(failure, "AUROC of each response-level JS summary at predicting "
                         "reward 0, with a prompt-bootstrap 95% interval.", max_rows=40))
    return out


def _quantile_table(df: pd.DataFrame) -> pd.DataFrame:
    """JS quantiles as one row per (pair, generator): mean_js, p50, p90, ... columns."""
    F.require_columns(df, ["pair", "generator", "quantile", "js_value", "mean_js"], "quantiles")
    wide = df.pivot_table(index=["pair", "generator", "mean_js"], columns="quantile",
                          values="js_value")
    wide.columns = [f"p{100 * q:g}" for q in wide.columns]
    return wide.reset_index()


def _render_mass(inp: Inputs, opt: ReportOptions) -> list[Block]:
    topk, path = _analysis(inp, "topk")
    out = [_missing("top-k overlap", path) if topk is None
           else figure(lambda: C.topk_overlap(topk), "top-k overlap", opt.params.dpi)]
    rank, path = _analysis(inp, "rank")
    realloc, realloc_path = _analysis(inp, "reallocation")
    out.append(_missing("rank histogram", path) if rank is None
               else figure(lambda: C.rank_histogram(rank, realloc), "rank histogram",
                            opt.params.dpi))
    out.append(_missing("reallocation summary", realloc_path) if realloc is None else
               table(realloc, "Where the tuned top-1 sits under the base model, over all "
                     "and over divergent positions."))
    return out


def _single(key: str, draw: Callable[[pd.DataFrame], tuple[Figure, str]], what: str,
            stage: str = "analyze") -> Callable[[Inputs, ReportOptions], list[Block]]:
    def render(inp: Inputs, opt: ReportOptions) -> list[Block]:
        df, path = _analysis(inp, key)
        if df is None:
            return [Notice(f"{what} ({path})", stage)]
        return [figure(lambda: draw(df), what, opt.params.dpi)]
    return render


def _render_roles(inp: Inputs, opt: ReportOptions) -> list[Block]:
    shares, path = _analysis(inp, "roles")
    if shares is None:
        return [_missing("role ground truth", path)]
    pr, _ = _analysis(inp, "role_pr")
    out = [figure(lambda: C.role_ground_truth(shares, pr), "role ground truth", opt.params.dpi)]
    return out + _render_decisive(inp, opt)


def _render_decisive(inp: Inputs, opt: ReportOptions) -> list[Block]:
    detection = inp.csv(inp.layout.plot("decisive_detection"))
    if detection is None:
        return [Notice("measured decisiveness (data/plots/decisive_detection.csv)",
                       "decisive")]
    metrics = inp.json(inp.layout.metrics("decisive")) or {}
    cuts = sorted(detection["pivot_cut"].unique()) if "pivot_cut" in detection else [0.0]
    cut = next((g["pivot_cut"] for g in metrics.get("generators", {}).values()),
               cuts[len(cuts) // 2])
    return [figure(lambda: C.measured_decisiveness(detection, cut), "measured decisiveness",
                   opt.params.dpi),
            table(detection, "Precision, recall and AUC of each signal at finding the "
                  "positions whose resampling moves success by at least the pivot cut "
                  "(decisive stage).", max_rows=60)]


def _render_weighted(inp: Inputs, opt: ReportOptions) -> list[Block]:
    out = []
    results = inp.table(inp.layout.weighted_dir / "results.parquet")
    if results is None:
        out.append(Notice("weighted-advantage results (data/weighted/results.parquet)",
                          "weighted_summary"))
    else:
        out.append(figure(lambda: E.weighted_summary(results), "weighted summary", opt.params.dpi))
        out.append(table(results, "Per variant: mean ± std over seeds, the difference "
                         "to baseline with its Welch and paired CIs, and the paired test's "
                         "minimal detectable effect at this variant's spread."))
    power = (inp.json(inp.layout.metrics("weighted")) or {}).get("power")
    if power:
        out.append(table(pd.DataFrame(list(power.items()), columns=["metric", "value"]),
                         "Power of the grid: seed-to-seed std of the baseline, mean eval "
                         "standard error, pooled sd of the paired differences and the "
                         "minimal detectable effect (paired t, alpha 0.05, power 0.8).",
                         fold=False))
    training = inp.first_table(inp.layout.weighted_dir / "training.parquet",
                               inp.layout.weighted_dir / "training")
    if training is None:
        out.append(Notice("training curves (data/weighted/training)", "weighted_summary"))
    else:
        out.append(figure(lambda: E.weighted_curves(training, ACCURACY), "training curves",
                          opt.params.dpi))
        logs = grid_logs(training)
        if any("clip_frac_low" in log for log in logs.values()):
            out.append(figure(lambda: E.dapo_diagnostics(logs), "weighted grid DAPO diagnostics",
                              opt.params.dpi))
        else:  # the trainer logs update statistics only for steps that took an update
            out.append(Note("No DAPO diagnostics: no run of the grid took an update (dynamic "
                            "sampling dropped every group: all responses of a prompt equally "
                            "right or wrong)."))
    return out


def grid_logs(training: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each variant's trainer log (train_* metrics), mean over seeds, as step + columns."""
    train = training[training["metric"].str.startswith("train_")]
    wide = train.pivot_table(index=["variant", "step"], columns="metric", values="value",
                             aggfunc="mean").reset_index()
    wide.columns = [c.removeprefix("train_") for c in wide.columns]
    return {v: rows.drop(columns="variant") for v, rows in wide.groupby("variant")}


def _render_dapo(inp: Inputs, opt: ReportOptions) -> list[Block]:
    log = inp.csv(inp.layout.plot("rl_log"))
    if log is None:
        return [Notice("RL training log (data/plots/rl_log.csv)", "rl")]
    return [figure(lambda: E.dapo_diagnostics({"rl": log}), "RL DAPO diagnostics",
                   opt.params.dpi)]


def _render_viewer(inp: Inputs, opt: ReportOptions) -> list[Block]:
    layout = inp.layout
    try:
        result = viewer.render_viewer(layout, lambda name: opt.models.spec(name, layout),
                                      opt.params.responses_per_group, opt.params.viewer_pairs,
                                      opt.params.top_k)
    except TableIncomplete:
        return [Notice("token table (data/tokens)", "score")]
    out: list[Block] = [viewer.legend()]
    if not result.have_samples:
        out.append(Notice("samples with token ids (data/samples): hover shows only each "
                          "model's top-1", "sample"))
    if result.missing_models:
        out.append(Notice("models for the top-k candidates (" +
                          ", ".join(result.missing_models) + "): hover shows only each "
                          "model's top-1", "rl"))
    return out + result.blocks


SECTIONS = (
    Section("findings", "The study against this run",
            "Does each finding of the study reproduce here? yes / partly / no, by a rule stated "
            "per row, with the numbers it was decided on.", _render_findings),
    Section("family", "The model family",
            "Held-out accuracy of each model and the headline numbers of every analysis.",
            _render_family),
    Section("shift", "1. Token-level distribution shift",
            "Study: >83% (DAPO) / >98% (SimpleRL) of positions have near-zero JS; low-JS positions "
            "are mostly low base entropy; JS is highest at the start of a response, lowest in the "
            "middle, slightly higher at the end. RRTokenIntervention: Gini of the divergence "
            "0.936 (~1-8% of tokens carry it); and does divergence predict failure?",
            _render_shift),
    Section("mass", "2. Probability-mass reallocation",
            "Study (JS > 0.1): top-k overlap low at k=1 but >80% for k ≥ 2; ~30% of RL top-1 "
            "tokens are already base top-1 and >80–90% within base top-3; few have base "
            "probability < 0.01.", _render_mass),
    Section("evolution", "3. Evolution over RL checkpoints",
            "Study: JS rises over training, the 95th/99th percentiles faster than the rest, and "
            "the divergent set converges to the final one (Jaccard → 1).",
            _single("evolution", C.checkpoint_evolution, "checkpoint evolution")),
    Section("controls", "4. RL vs SFT vs RFT",
            "Study: an SFT model's shifts are denser and more spread out than RL's.",
            _single("controls", C.tuned_comparison, "RL vs SFT vs RFT")),
    Section("truncation", "5. Truncation error of top-p JS",
            "The study computed JS on top-p (0.7) truncated supports; this measures what that "
            "approximation costs against exact full-vocabulary JS.",
            _single("truncation", C.truncation_error, "truncation error")),
    Section("roles", "6. Ground truth: decisive token roles",
            "The toy task knows which tokens decide correctness (method, intermediate results, "
            "answer format, final answer): does JS find them? Then measured decisiveness: "
            "positions where resampling one token changes the success probability, and how "
            "well JS, base entropy and |Δ| find them.", _render_roles),
    Section("cross", "7. Cross-sampling: accuracy vs budget",
            "Forward (base primary, RL intervenes) tests sufficiency; backward (RL primary, base "
            "intervenes) tests necessity. Study: forward DAPO 8.2% → >44% switching 7.8% of "
            "tokens; backward 44.8% → <8.5% switching 10.1%. Random/entropy/Δ rules at matched "
            "budget are the controls the study lacked; beside them the companion study's signed "
            "log-prob gap gate (gap_neg: its neg_logp), both KLs and an early-positions control "
            "(RRTokenIntervention). Then selective extrapolation (companion, AIME24: RL alone -> "
            "extrapolated +1.3 to +2.9 points) against the tuned model alone, and what the "
            "companion's shortcuts (top-50 mixing, ½(KL+RKL) gate, no budget) change.",
            render_cross),
    Section("dapo", "8. DAPO as DAPO: off-policy updates and clipping",
            "The main RL run takes several optimiser steps per rollout batch, so after the "
            "first (on-policy) update the ratio π/π_old moves, k3 is non-zero and clip-higher's "
            "two bounds act; per step: active clip fractions, ratio spread, k3, KL to base.",
            _render_dapo),
    Section("weighted", "9. Divergence-weighted advantage",
            "Study (3 runs): DAPO 42.48 ± 1.35, low-KL boost 44.92 ± 0.05, high-KL boost "
            "45.05 ± 0.79. Here: every variant with several paired seeds, mean ± std, the "
            "difference to baseline and the effect the grid could have detected.",
            _render_weighted),
    Section("viewer", "10. Token viewer",
            "Responses of both generators, correct and incorrect, each token coloured by JS; "
            "hover a token for both models' top candidates at that position.", _render_viewer),
)

