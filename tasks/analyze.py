"""Prefect tasks wrapping the analyses (`rlvr.tokens.analysis`)."""

from __future__ import annotations

from typing import Any

from prefect import task

from rlvr.tokens.analysis import run_analyses, write_headline_metrics
from tasks.retry import TRANSIENT_RETRIES


@task(name="run-analyses", **TRANSIENT_RETRIES)
def run_analyses_task(
    data_dir: str, out_dir: str, plots_dir: str, params: dict[str, Any]
) -> dict[str, int]:
    """Run every sql/agg_* analysis; return rows per result."""
    results = run_analyses(data_dir, out_dir, plots_dir, params, progress=False)
    return {name: table.num_rows for name, table in results.items()}


@task(name="write-analysis-metrics", **TRANSIENT_RETRIES)
def write_metrics_task(results_dir: str, metrics_path: str, tau: float) -> int:
    """Write the headline numbers as DVC metrics; return how many pairs they cover."""
    return len(write_headline_metrics(results_dir, metrics_path, tau)["pairs"])
