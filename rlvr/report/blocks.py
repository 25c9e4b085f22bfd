"""The report's building blocks: its knobs, its inputs (read from the layout), HTML pieces.

Figures are PNGs embedded as base64 data URIs and the styling is inline, so the page opens
offline with no other file.
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

from rlvr.config import require
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.report import figures as F
from rlvr.warehouse.views import complete_files

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
.resp-head{font-size:12px;color:#555}.prompt{font-family:monospace;font-size:13px;color:#777;white-space:pre-wrap}
.toks{font-family:monospace;font-size:14px;line-height:2;white-space:pre-wrap}
.tok.tmpl{font-style:italic;opacity:.6}
.tok{padding:1px 3px;border-radius:3px;cursor:help}.tok.dark{color:#fff}
.legend{font-size:12px;margin:6px 0}.inputs{font-size:12px;color:#666}
"""

FOLD_ROWS = 15  # tables longer than this start folded

CHECKPOINT_PAIR = "__rl_step_"  # pairs `<base>__rl_step_<N>`: shown only in the evolution section


@dataclass(frozen=True)
class ReportParams:
    """`report`: what the page shows beyond the stored tables."""

    responses_per_group: int = 2  # token viewer: per (pair, generator, correct/incorrect)
    viewer_pairs: list[str] = field(default_factory=lambda: ["base__rl", "base__sft"])  # [] = all
    top_k: int = 5  # token viewer: each model's candidates shown on hover
    dpi: int = 90  # figure resolution (PNG, embedded)

    def __post_init__(self) -> None:
        require(self.responses_per_group >= 0, "responses_per_group", "must be >= 0",
                "use e.g. 2 (0 hides the token viewer's responses)")
        require(self.top_k >= 1, "top_k", "must be >= 1", "use e.g. 5")
        require(40 <= self.dpi <= 300, "dpi", f"{self.dpi} is outside [40, 300]", "use e.g. 90")
        for pair in self.viewer_pairs:
            require("__" in pair, "viewer_pairs", f"{pair!r} is not `<base>__<tuned>`",
                    "name pairs like base__rl")


@dataclass(frozen=True)
class ReportOptions:
    """Everything a render needs besides the tables: the knobs and the models' resolution."""

    params: ReportParams
    models: ModelsParams  # the viewer loads each shown pair's models through `models`
    layout: Layout


@dataclass
class Inputs:
    """Reads the report's inputs (layout paths); `None` for a table that was not produced."""

    layout: Layout
    used: list[str] = field(default_factory=list)

    def _use(self, path: Path) -> None:
        self.used.append(path.relative_to(self.layout.root).as_posix())

    def table(self, path: Path) -> pd.DataFrame | None:
        files = complete_files(path)
        if not files:
            return None
        self._use(path)
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    def first_table(self, *paths: Path) -> pd.DataFrame | None:
        """The first of `paths` that exists (producers may write a file or a directory)."""
        for path in paths:
            df = self.table(path)
            if df is not None:
                return df
        return None

    def json(self, path: Path) -> dict | None:
        if not path.is_file():
            return None
        self._use(path)
        return json.loads(path.read_text())

    def csv(self, path: Path) -> pd.DataFrame | None:
        if not path.is_file():
            return None
        self._use(path)
        return pd.read_csv(path)


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


def mismatch_html(what: str, err: Exception | str) -> str:
    return f'<div class="notice">{FAILURE} {html.escape(what)}: {html.escape(str(err))}</div>'


def figure(make: Callable[[], tuple[Figure, str]], what: str, dpi: int) -> str:
    """Render one figure; a producer/report schema mismatch, or a figure with nothing drawn in
    it, becomes a visible notice."""
    try:
        fig, caption = make()
    except F.SchemaError as err:
        plt.close("all")
        return mismatch_html(what, err)
    if not any(ax.has_data() for ax in fig.axes):
        plt.close(fig)
        return mismatch_html(what, "its input has no rows to plot")
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


def paired_gain(model: pd.Series, base: pd.Series) -> dict[str, float]:
    """Accuracy minus the base's on the same prompts (per-prompt means indexed by prompt id),
    with a 95% normal interval over prompts: pairing removes prompt difficulty."""
    both = pd.concat([model, base], axis=1, join="inner").to_numpy(dtype=float)
    if len(both) != len(model) or len(both) != len(base):
        raise ValueError("paired_gain: the models were sampled on different prompts; rerun "
                         "the sample stage (dvc repro sample)")
    diff = both[:, 0] - both[:, 1]
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    gain = float(diff.mean())
    return {"gain": gain, "ci_lo": gain - 1.96 * se, "ci_hi": gain + 1.96 * se}


def gain_table(samples_dir: Path, base: str = "base") -> pd.DataFrame | None:
    """Every sampled model's held-out accuracy and its gain over `base`, paired by prompt, from
    the samples table's rewards (None without the base's samples)."""
    files: dict[str, list[Path]] = {}
    for f in complete_files(samples_dir):  # one marker for the whole table, at its top
        files.setdefault(f.parent.name.removeprefix("model="), []).append(f)
    per_prompt = {name: pd.concat([pd.read_parquet(f, columns=["prompt_id", "reward"])
                                   for f in fs]).groupby("prompt_id")["reward"].mean()
                  for name, fs in files.items()}
    if base not in per_prompt:
        return None
    rows = [{"model": name, "accuracy": float(acc.mean()), "prompts": len(acc),
             **paired_gain(acc, per_prompt[base])}
            for name, acc in per_prompt.items() if name != base]
    return pd.DataFrame(rows)


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


def finding_inputs(inp: Inputs) -> dict[str, dict | None]:
    """The metrics the findings table is decided from (None where a stage did not run)."""
    return {name: inp.json(inp.layout.metrics(name))
            for name in ("analysis", "cross", "decisive", "weighted")}


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
