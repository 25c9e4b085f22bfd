"""Prefect tasks wrapping the analyses (`rlvr.tokens.analysis`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.tokens.analysis import AnalyzeParams, run_analyses, write_headline_metrics
from tasks.retry import TRANSIENT_RETRIES


@task(name="run-analyses", **TRANSIENT_RETRIES)
def run_analyses_task(layout: Layout, cfg: AnalyzeParams) -> dict[str, int]:
    """Run every sql/analyze/agg_* analysis; return rows per result."""
    results = run_analyses(layout, cfg, progress=False)
    return {name: table.num_rows for name, table in results.items()}


@task(name="write-analysis-metrics", **TRANSIENT_RETRIES)
def write_metrics_task(layout: Layout, cfg: AnalyzeParams) -> int:
    """Write the headline numbers as DVC metrics; return how many pairs they cover."""
    return len(write_headline_metrics(layout, cfg.tau, cfg.final_pair)["pairs"])
