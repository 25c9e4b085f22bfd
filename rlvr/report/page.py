"""The HTML report: one self-contained page with the study's figures, captions and a token viewer.

Each section renders from its inputs under the data root when they exist and otherwise says
which stage produces them; nothing is invented. Figures are PNGs embedded as base64 data URIs
and the styling is inline, so `index.html` opens offline with no other file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from rlvr.report import experiments as E
from rlvr.report import figures as F
from rlvr.report import viewer
from rlvr.store.atomic import atomic_dir
from rlvr.warehouse.views import complete_files
from rlvr.weighted.grid import ACCURACY

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
 color:#222;background:#fafafa;line-height:1.4}
main{max-width:1100px;margin:0 auto;padding:16px 24px}
nav{background:#fff;border-bottom:1px solid #ddd;padding:8px 24px;font-size:13px}
nav a{margin-right:12px;color:#1a5fb4;text-decoration:none}
h1{font-size:24px;margin:8px 0}h2{font-size:19px;border-bottom:2px solid #ddd;margin-top:32px}
section p.intro{color:#444;font-size:14px}
figure{margin:12px 0;background:#fff;border:1px solid #e3e3e3;padding:8px}
figure img{max-width:100%}
figure{overflow-x:auto}summary{cursor:pointer;font-size:13px}figcaption{font-size:13px;color:#333;margin-top:4px}
.notice{background:#fff4e5;border-left:4px solid #e67e22;padding:8px 12px;margin:10px 0;
 font-size:14px}
table{border-collapse:collapse;font-size:12px;background:#fff;margin:8px 0}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}th{background:#f0f0f0}
td:first-child{text-align:left}
.resp{background:#fff;border:1px solid #e3e3e3;margin:8px 0;padding:6px 8px}
.resp-head{font-size:12px;color:#555}.prompt{font-family:monospace;font-size:13px;color:#777}
.toks{font-family:monospace;font-size:14px;line-height:2}
.tok{padding:1px 3px;border-radius:3px;cursor:help}.tok.dark{color:#fff}
.legend{font-size:12px;margin:6px 0}.inputs{font-size:12px;color:#666}
"""


@dataclass(frozen=True)
class ReportOptions:
    """What the report shows beyond the stored tables."""

    responses_per_group: int = 2  # token viewer: per (pair, generator, correct/incorrect)
    viewer_pairs: tuple[str, ...] = ()  # pairs in the viewer; empty = every scored pair
    top_k: int = 5  # candidates per model shown on hover
    models_dir: str = "data/models"  # where the viewer loads models for the top-k candidates
    model_paths: dict[str, str] = field(default_factory=dict)  # per-name overrides of models_dir
    dpi: int = 90


@dataclass
class Inputs:
    """Reads the report's inputs under `root`; `None` for a table that was not produced."""

    root: Path
    used: list[str] = field(default_factory=list)

    def table(self, rel: str) -> pd.DataFrame | None:
        files = complete_files(self.root / rel)
        if not files:
            return None
        self.used.append(rel)
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    def first_table(self, *rels: str) -> pd.DataFrame | None:
        """The first of `rels` that exists (producers may write a file or a directory)."""
        for rel in rels:
            df = self.table(rel)
            if df is not None:
                return df
        return None

    def json(self, rel: str) -> dict | None:
        path = self.root / rel
        if not path.is_file():
            return None
        self.used.append(rel)
        return json.loads(path.read_text())


# --- HTML blocks --------------------------------------------------------------------------------


def figure_html(fig: Figure, caption: str, dpi: int = 90) -> str:
    """A <figure> with the PNG embedded as a data URI; closes `fig`."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def notice_html(what: str, stage: str) -> str:
    """The placeholder for an input that does not exist yet."""
    return (f'<div class="notice">Not produced: {html.escape(what)}. Run stage '
            f"<code>{html.escape(stage)}</code> (<code>dvc repro {html.escape(stage)}</code>)."
            "</div>")


def table_html(df: pd.DataFrame, caption: str, max_rows: int = 30, fold: bool = True) -> str:
    """A small DataFrame as an HTML table with a caption (floats to 4 significant digits)."""
    body = df.head(max_rows).to_html(index=False, float_format=lambda x: f"{x:.4g}", border=0)
    more = f" (first {max_rows} of {len(df)} rows)" if len(df) > max_rows else ""
    text = html.escape(caption + more)
    if fold and len(df) > FOLD_ROWS:  # long tables start folded: <details> needs no script
        return (f"<figure><details><summary>{text} ({len(df)} rows: click to show)</summary>"
                f"{body}</details></figure>")
    return f"<figure>{body}<figcaption>{text}</figcaption></figure>"


FAILURE = "Could not draw"  # how a notice of a figure that failed to render starts


def _mismatch_html(what: str, err: Exception | str) -> str:
    return f'<div class="notice">{FAILURE} {html.escape(what)}: {html.escape(str(err))}</div>'


def _figure(make: Callable[[], tuple[Figure, str]], what: str, dpi: int) -> str:
    """Render one figure; a producer/report schema mismatch, or a figure with nothing drawn in
    it, becomes a visible notice."""
    try:
        fig, caption = make()
    except F.SchemaError as err:
        plt.close("all")
        return _mismatch_html(what, err)
    if not any(ax.has_data() for ax in fig.axes):
        plt.close(fig)
        return _mismatch_html(what, "its input has no rows to plot")
    return figure_html(fig, caption, dpi)


def failures(page: str) -> list[str]:
    """The failure notices of a rendered page, as plain text: what a reader would see in place
    of a figure (a schema mismatch between producer and report, or an empty figure)."""
    notices = re.findall(r'<div class="notice">(.*?)</div>', page, flags=re.S)
    texts = [html.unescape(re.sub(r"<[^>]+>", "", n)) for n in notices]
    return [t for t in texts if t.startswith(FAILURE)]


# --- derived tables ------------------------------------------------------------------------------


def model_table(models: dict) -> pd.DataFrame:
    """models.json ({model: {accuracy, ci95_low, ci95_high, ...}}) as model, accuracy, ci_lo, ci_hi
    rows; entries without an accuracy are skipped."""
    rows = []
    for name, entry in models.items():
        if isinstance(entry, dict) and isinstance(entry.get("accuracy"), int | float):
            rows.append((name, float(entry["accuracy"]), entry.get("ci95_low", math.nan),
                         entry.get("ci95_high", math.nan)))
    return pd.DataFrame(rows, columns=["model", "accuracy", "ci_lo", "ci_hi"])


def headline_table(metrics: dict) -> pd.DataFrame:
    """analysis.json as one row per metric and one column per pair/generator (other entries
    flattened below as dotted keys with a single `value` column)."""
    pairs = metrics.get("pairs")
    if not isinstance(pairs, dict):
        return pd.DataFrame(flatten_metrics(metrics), columns=["metric", "value"])
    columns = {f"{pair}/{gen}": values for pair, gens in sorted(pairs.items())
               if CHECKPOINT_PAIR not in pair for gen, values in sorted(gens.items())}
    table = pd.DataFrame(columns)
    return table.rename_axis("metric").reset_index()


# (what, the study's number, analysis.json key under pairs/<pair>/<generator>)
STUDY_NUMBERS = (
    ("positions with JS > 0.01 (study: near-zero JS at >83% DAPO / >98% SimpleRL)", "< 17% / < 2%",
     "share_js_above_0.01"),
    ("positions with JS > 0.1 (divergent)", "not stated", "share_js_above_0.1"),
    ("divergent: tuned top-1 is base top-1", "~30%", "divergent_share_top1_is_base_top1"),
    ("divergent: tuned top-1 within base top-3", "> 80–90%", "divergent_share_top1_in_base_top3"),
    ("divergent: tuned top-1 with base prob < low cut", "~5% DAPO, ~0 SimpleRL",
     "divergent_share_base_prob_below_low"),
    ("divergent: top-1 overlap", "low", "divergent_topk_overlap_1"),
    ("divergent: top-2 overlap", "> 80% (SimpleRL)", "divergent_topk_overlap_2"),
    ("mean JS, first position bin", "highest", "mean_js_first_bin"),
    ("mean JS, middle bins", "lowest", "mean_js_middle_bins"),
    ("mean JS, last position bin", "a little higher", "mean_js_last_bin"),
)


def study_table(headline: dict, pair: str = "base__rl", generator: str = "tuned") -> pd.DataFrame:
    """The study's headline numbers next to this run's, for one pair and generator."""
    values = headline.get("pairs", {}).get(pair, {}).get(generator, {})
    rows = [(what, study, values.get(key, math.nan)) for what, study, key in STUDY_NUMBERS]
    return pd.DataFrame(rows, columns=["finding", "study (Qwen2.5-32B, AIME24)",
                                       f"this run ({pair}, {generator} responses)"])


def flatten_metrics(metrics: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested metrics as (dotted key, value) rows, for the headline table."""
    rows: list[tuple[str, object]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten_metrics(value, name + ".")
        else:
            rows.append((name, value))
    return rows


# --- sections -------------------------------------------------------------------------------------

CROSS_CURVE = "plots/cross_accuracy_by_budget.csv"  # written by the cross_sample stage
# the family's training logs (data/plots/*.csv, written by pretrain / sft / rl / evaluate)
TRAINING_LOGS = {  # panel -> (file, the columns drawn)
    "pretrain loss": ("plots/pretrain_loss.csv", ["loss"]),
    "SFT / RFT loss": ("plots/sft_loss.csv", ["loss"]),
    "RL train reward": ("plots/rl_log.csv", ["reward_mean"]),
    "RL checkpoint accuracy": ("plots/rl_checkpoint_accuracy.csv", ["accuracy"]),
}
FOLD_ROWS = 15  # tables longer than this start folded
IDENTITY_ROWS = 5  # token identity table: top tokens by mean JS per pair and generator
CHECKPOINT_PAIR = "__rl_step_"  # pairs `<base>__rl_step_<N>`: shown only in the evolution section

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
}


@dataclass(frozen=True)
class Section:
    """One report section: its anchor, title, what the study found, and how to render it."""

    anchor: str
    title: str
    intro: str
    render: Callable[[Inputs, ReportOptions], list[str]]


def _analysis(inp: Inputs, key: str) -> tuple[pd.DataFrame | None, str]:
    """An analysis table without the RL-checkpoint pairs (they have their own section)."""
    stem = ANALYSES[key]
    df = inp.table(f"analysis/{stem}.parquet")
    if df is not None and "pair" in df.columns and key != "evolution":
        df = df[~df["pair"].astype(str).str.contains(CHECKPOINT_PAIR)].reset_index(drop=True)
    return df, f"data/analysis/{stem}.parquet"


def _render_family(inp: Inputs, opt: ReportOptions) -> list[str]:
    out = []
    models = inp.json("metrics/models.json")
    if models is None:
        out.append(notice_html("model accuracies (data/metrics/models.json)", "evaluate"))
    else:
        out.append(_figure(lambda: E.model_accuracies(model_table(models)), "model accuracies",
                           opt.dpi))
    curves = {}
    for name, (rel, columns) in TRAINING_LOGS.items():
        df = _read_csv(inp, rel)
        if df is not None:
            curves[name] = df[[c for c in ["step", *columns] if c in df.columns]]
    if curves:
        out.append(_figure(lambda: E.training_curves(curves), "training curves", opt.dpi))
    else:
        out.append(notice_html("training logs (data/plots/pretrain_loss.csv, rl_log.csv, ...)",
                               "pretrain"))
    headline = inp.json("metrics/analysis.json")
    if headline is None:
        out.append(notice_html("headline analysis metrics (data/metrics/analysis.json)",
                               "analyze"))
    else:
        out.append(table_html(study_table(headline), "The study's findings next to this run "
                              "(base__rl pair, RL responses as in the study); shares in [0, 1]."))
        out.append(table_html(headline_table(headline), "Headline numbers of the analyses per "
                              "pair/generator (data/metrics/analysis.json; RL checkpoints in §3).",
                              max_rows=60, fold=False))
    return out


def _missing(what: str, path: str) -> str:
    return notice_html(f"{what} ({path})", "analyze")


def _render_shift(inp: Inputs, opt: ReportOptions) -> list[str]:
    out = []
    for key, draw, what in (
        ("histogram", F.js_histogram, "JS histogram"),
        ("sparsity", F.sparsity_curve, "sparsity curve"),
        ("entropy_fixed", lambda d: F.js_by_entropy(d, "fixed"), "JS by base entropy"),
        ("entropy_quantile", lambda d: F.js_by_entropy(d, "quantile"), "JS by entropy quantile"),
        ("correctness", F.correct_vs_incorrect, "correct vs incorrect"),
    ):
        df, path = _analysis(inp, key)
        out.append(_missing(what, path) if df is None
                   else _figure(lambda d=df, f=draw: f(d), what, opt.dpi))
    norm, path = _analysis(inp, "position")
    edges, _ = _analysis(inp, "position_edges")
    out.append(_missing("JS by position", path) if norm is None
               else _figure(lambda: F.js_by_position(norm, edges), "JS by position", opt.dpi))
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
        out.append(_missing(what, path) if df is None else table_html(df, caption, max_rows=40))
    return out


def _quantile_table(df: pd.DataFrame) -> pd.DataFrame:
    """JS quantiles as one row per (pair, generator): mean_js, p50, p90, ... columns."""
    F.require_columns(df, ["pair", "generator", "quantile", "js_value", "mean_js"], "quantiles")
    wide = df.pivot_table(index=["pair", "generator", "mean_js"], columns="quantile",
                          values="js_value")
    wide.columns = [f"p{100 * q:g}" for q in wide.columns]
    return wide.reset_index()


def _render_mass(inp: Inputs, opt: ReportOptions) -> list[str]:
    topk, path = _analysis(inp, "topk")
    out = [_missing("top-k overlap", path) if topk is None
           else _figure(lambda: F.topk_overlap(topk), "top-k overlap", opt.dpi)]
    rank, path = _analysis(inp, "rank")
    realloc, realloc_path = _analysis(inp, "reallocation")
    out.append(_missing("rank histogram", path) if rank is None
               else _figure(lambda: F.rank_histogram(rank, realloc), "rank histogram", opt.dpi))
    out.append(_missing("reallocation summary", realloc_path) if realloc is None else
               table_html(realloc, "Where the tuned top-1 sits under the base model, over all "
                                   "and over divergent positions."))
    return out


def _single(key: str, draw: Callable[[pd.DataFrame], tuple[Figure, str]], what: str,
            stage: str = "analyze") -> Callable[[Inputs, ReportOptions], list[str]]:
    def render(inp: Inputs, opt: ReportOptions) -> list[str]:
        df, path = _analysis(inp, key)
        if df is None:
            return [notice_html(f"{what} ({path})", stage)]
        return [_figure(lambda: draw(df), what, opt.dpi)]
    return render


def _render_roles(inp: Inputs, opt: ReportOptions) -> list[str]:
    shares, path = _analysis(inp, "roles")
    if shares is None:
        return [_missing("role ground truth", path)]
    pr, _ = _analysis(inp, "role_pr")
    return [_figure(lambda: F.role_ground_truth(shares, pr), "role ground truth", opt.dpi)]


def _render_cross(inp: Inputs, opt: ReportOptions) -> list[str]:
    curve = _read_csv(inp, CROSS_CURVE)
    if curve is None:
        return [notice_html(f"cross-sampling accuracy vs budget (data/{CROSS_CURVE})",
                            "cross_sample")]
    models = model_table(inp.json("metrics/models.json") or {})
    ref = dict(zip(models["model"], models["accuracy"], strict=True))
    ref = {m: ref[m] for m in ("base", "rl") if m in ref}
    out = [_figure(lambda: E.cross_budget(curve, ref), "cross-sampling curves", opt.dpi)]
    metrics = inp.json("metrics/cross.json")
    if metrics is not None:
        out.append(table_html(pd.DataFrame(flatten_metrics(metrics), columns=["metric", "value"]),
                              "Cross-sampling headline numbers (data/metrics/cross.json): the "
                              "budget at which forward reaches / backward loses half the RL gain.",
                              max_rows=40))
    keep = [c for c in ("direction", "rule", "threshold", "matched_threshold", "n_responses",
                        "budget_share", "budget_tokens", "accuracy", "accuracy_low",
                        "accuracy_high", "accuracy_seed_std") if c in curve.columns]
    out.append(table_html(curve[keep], "Cross-sampling points: accuracy and effective budget per "
                                       "rule, direction and threshold, with bootstrap CIs.",
                          max_rows=60))
    return out


def _read_csv(inp: Inputs, rel: str) -> pd.DataFrame | None:
    path = inp.root / rel
    if not path.is_file():
        return None
    inp.used.append(rel)
    return pd.read_csv(path)


def _render_weighted(inp: Inputs, opt: ReportOptions) -> list[str]:
    out = []
    results = inp.table("weighted/results.parquet")
    if results is not None:
        # older writers named the columns after the docstring of rlvr.weighted.grid
        results = results.rename(columns={"accuracy_mean": "mean", "accuracy_std": "std",
                                          "ci_low": "diff_lo", "ci_high": "diff_hi"})
    if results is None:
        out.append(notice_html("weighted-advantage results (data/weighted/results.parquet)",
                               "weighted_summary"))
    else:
        out.append(_figure(lambda: E.weighted_summary(results), "weighted summary", opt.dpi))
        out.append(table_html(results, "Per variant: mean ± std over seeds and the difference "
                                        "to baseline with its CI."))
    training = inp.first_table("weighted/training.parquet", "weighted/training")
    if training is None:
        out.append(notice_html("training curves (data/weighted/training)", "weighted_summary"))
    else:
        out.append(_figure(lambda: E.weighted_curves(training, ACCURACY), "training curves",
                           opt.dpi))
    return out


def _render_viewer(inp: Inputs, opt: ReportOptions) -> list[str]:
    if not complete_files(inp.root / "tokens"):
        return [notice_html("token table (data/tokens)", "score")]
    have_samples = bool(complete_files(inp.root / "samples"))
    result = viewer.render_viewer(inp.root / "tokens", inp.root / "samples" if have_samples
                                  else None, opt.models_dir, opt.responses_per_group,
                                  opt.viewer_pairs, opt.top_k, opt.model_paths)
    out = [viewer.legend_html()]
    if not have_samples:
        out.append(notice_html("samples with token ids (data/samples): hover shows only each "
                               "model's top-1", "sample"))
    if result.missing_models:
        out.append(notice_html("models for the top-k candidates (" +
                               ", ".join(result.missing_models) + "): hover shows only each "
                               "model's top-1", "rl"))
    return out + result.blocks


SECTIONS = (
    Section("family", "The model family",
            "Held-out accuracy of each model and the headline numbers of every analysis.",
            _render_family),
    Section("shift", "1. Token-level distribution shift",
            "Study: >83% (DAPO) / >98% (SimpleRL) of positions have near-zero JS; low-JS positions "
            "are mostly low base entropy; JS is highest at the start of a response, lowest in the "
            "middle, slightly higher at the end.", _render_shift),
    Section("mass", "2. Probability-mass reallocation",
            "Study (JS > 0.1): top-k overlap low at k=1 but >80% for k ≥ 2; ~30% of RL top-1 "
            "tokens are already base top-1 and >80–90% within base top-3; few have base "
            "probability < 0.01.", _render_mass),
    Section("evolution", "3. Evolution over RL checkpoints",
            "Study: JS rises over training, the 95th/99th percentiles faster than the rest, and "
            "the divergent set converges to the final one (Jaccard → 1).",
            _single("evolution", F.checkpoint_evolution, "checkpoint evolution")),
    Section("controls", "4. RL vs SFT vs RFT",
            "Study: an SFT model's shifts are denser and more spread out than RL's.",
            _single("controls", F.tuned_comparison, "RL vs SFT vs RFT")),
    Section("truncation", "5. Truncation error of top-p JS",
            "The study computed JS on top-p (0.7) truncated supports; this measures what that "
            "approximation costs against exact full-vocabulary JS.",
            _single("truncation", F.truncation_error, "truncation error")),
    Section("roles", "6. Ground truth: decisive token roles",
            "The toy task knows which tokens decide correctness (method, intermediate results, "
            "answer format, final answer): does JS find them?", _render_roles),
    Section("cross", "7. Cross-sampling: accuracy vs budget",
            "Forward (base primary, RL intervenes) tests sufficiency; backward (RL primary, base "
            "intervenes) tests necessity. Study: forward DAPO 8.2% → >44% switching 7.8% of "
            "tokens; backward 44.8% → <8.5% switching 10.1%. Random/entropy/Δ rules at matched "
            "budget are the controls the study lacked.", _render_cross),
    Section("weighted", "8. Divergence-weighted advantage",
            "Study (3 runs): DAPO 42.48 ± 1.35, low-KL boost 44.92 ± 0.05, high-KL boost "
            "45.05 ± 0.79. Here: every variant with several seeds, mean ± std.",
            _render_weighted),
    Section("viewer", "9. Token viewer",
            "Responses of both generators, correct and incorrect, each token coloured by JS; "
            "hover a token for both models' top candidates at that position.", _render_viewer),
)


def render_html(data_dir: str | Path, options: ReportOptions, progress: bool = False) -> str:
    """The whole report page as one HTML string, from whatever exists under `data_dir`."""
    inp = Inputs(Path(data_dir))
    parts = []
    for section in tqdm(SECTIONS, desc="report", unit="section", disable=not progress):
        try:
            blocks = section.render(inp, options)
        except F.SchemaError as err:
            blocks = [_mismatch_html(section.title, err)]
        parts.append(f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>'
                     f'<p class="intro">{html.escape(section.intro)}</p>{"".join(blocks)}'
                     "</section>")
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in SECTIONS)
    used = ", ".join(sorted(set(inp.used))) or "none"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>rlvr-lens report</title>"
            f"<style>{CSS}</style></head><body><nav>{nav}</nav><main>"
            "<h1>rlvr-lens: what RLVR changed, token by token</h1>"
            f"<p class=\"inputs\">Inputs read from <code>{html.escape(str(data_dir))}</code>: "
            f"{html.escape(used)}.</p>{''.join(parts)}</main></body></html>")


def build_report(
    data_dir: str | Path, out_dir: str | Path, options: ReportOptions, progress: bool = False
) -> dict[str, int]:
    """Write `out_dir/index.html` atomically; returns counts of figures, notices and failures
    (notices of figures that could not be drawn: `failures`)."""
    page = render_html(data_dir, options, progress)
    with atomic_dir(out_dir) as tmp:
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return {"figures": page.count("<img "), "notices": page.count('class="notice"'),
            "failures": len(failures(page)), "bytes": len(page.encode("utf-8"))}
