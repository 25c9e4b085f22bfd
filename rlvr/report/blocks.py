"""The report's building blocks: its knobs, its inputs (read from the layout), and the blocks a
section shows (figures, tables, notices) as data that the page's templates render.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from rlvr.config import require
from rlvr.generation.accuracy import paired_gain
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.report import figures as F
from rlvr.store.registry import SAMPLES, TableIncomplete, read_complete

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
        df = read_complete(path)
        if df is not None:
            self._use(path)
        return df

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


# --- blocks: what a section shows, as data (rendered by templates/blocks.html.j2) -------------


@dataclass(frozen=True)
class Plot:
    """A figure as the page knows it: drawn (`png`, base64) or failed (`error`, shown in its
    place as a notice that `Page.failures` counts)."""

    what: str
    caption: str = ""
    png: str = ""
    error: str = ""
    kind: ClassVar[str] = "plot"

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class Notice:
    """The placeholder for an input that does not exist yet, naming the stage that makes it."""

    what: str
    stage: str
    kind: ClassVar[str] = "notice"


@dataclass(frozen=True)
class Note:
    """A notice in the words of its section (not a missing input, not a failure)."""

    text: str
    kind: ClassVar[str] = "note"


@dataclass(frozen=True)
class Table:
    """A DataFrame's first rows as text cells, under a caption; long ones start folded."""

    columns: list[str]
    rows: list[list[str]]
    caption: str
    total: int  # rows in the DataFrame; `rows` holds at most max_rows of them
    folded: bool
    kind: ClassVar[str] = "table"


def figure(make: Callable[[], tuple[MplFigure, str]], what: str, dpi: int) -> Plot:
    """Render one figure; a producer/report schema mismatch, or a figure with nothing drawn in
    it, becomes a failed `Plot`: a visible notice in its place. Closes the figure."""
    try:
        fig, caption = make()
    except F.SchemaError as err:
        plt.close("all")
        return Plot(what, error=str(err))
    if not any(ax.has_data() for ax in fig.axes):
        plt.close(fig)
        return Plot(what, error="its input has no rows to plot")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return Plot(what, caption, png=base64.b64encode(buf.getvalue()).decode("ascii"))


def cell(value: object) -> str:
    """A table cell as pandas' `to_html` wrote it: floats to 4 significant digits."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "<NA>" if value is pd.NA else str(value)


def table(df: pd.DataFrame, caption: str, max_rows: int = 30, fold: bool = True) -> Table:
    """A small DataFrame as a `Table` (long tables start folded: <details> needs no script)."""
    rows = [[cell(v) for v in row] for row in df.head(max_rows).itertuples(index=False)]
    return Table([str(c) for c in df.columns], rows, caption, len(df),
                 fold and len(df) > FOLD_ROWS)


@dataclass(frozen=True)
class Token:
    """One token of the viewer: its text (newlines shown as ↵), JS colour and hover text."""

    text: str
    colour: str
    js: str  # formatted, for the data-js attribute
    title: str
    dark: bool  # white text on the darkest colours
    template: bool  # a chat-template token, shown faint


@dataclass(frozen=True)
class Response:
    """One response of the token viewer: a header line, the prompt and its tokens."""

    head: str
    prompt: str
    tokens: list[Token]
    joiner: str  # between tokens: "" for pieces that carry their own spaces
    kind: ClassVar[str] = "response"


@dataclass(frozen=True)
class Legend:
    """The viewer's colour legend: (label, colour, dark) per JS bin."""

    bins: list[tuple[str, str, bool]]
    kind: ClassVar[str] = "legend"


Block = Plot | Notice | Note | Table | Response | Legend


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


def gain_table(layout: Layout, base: str = "base") -> pd.DataFrame | None:
    """Every sampled model's held-out accuracy and its gain over `base`, paired by prompt, from
    the samples table's rewards (None without the base's samples)."""
    try:
        rows = SAMPLES.read(layout, ["model", "prompt_id", "reward"]).to_pandas()
    except TableIncomplete:
        return None
    per_prompt = {name: df.groupby("prompt_id")["reward"].mean()
                  for name, df in rows.groupby("model", sort=False)}
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
