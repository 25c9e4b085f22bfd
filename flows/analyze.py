"""Analyze stage: the study's analyses as SQL over the token table.

Run: `python -m flows.analyze` (what `dvc repro analyze` runs); reads the `analyze` section of
params.yaml and the complete tables under data/, writes data/analysis/<query>.parquet, the curves
to data/plots/analysis_*.csv and the headline numbers to data/metrics/analysis.json.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from rlvr.config import AnalyzeConfig, from_section, load_params
from tasks.analyze import run_analyses_task, write_metrics_task


@flow(name="analyze")
def analyze(
    params: dict[str, Any],
    data_dir: str = "data",
    out_dir: str = "data/analysis",
    plots_dir: str = "data/plots",
    metrics_path: str = "data/metrics/analysis.json",
) -> dict[str, int]:
    """Run every sql/agg_* file with `params` (the analyze section) and save the results."""
    logger = get_run_logger()
    # aggregate the token table: one parquet result per query, curves as plot CSVs
    rows = run_analyses_task(data_dir, out_dir, plots_dir, params)
    logger.info("analyses: %s", rows)
    # headline numbers for `dvc metrics`
    n_pairs = write_metrics_task(out_dir, metrics_path, params["tau"])
    logger.info("metrics for %d pairs -> %s", n_pairs, metrics_path)
    return rows


if __name__ == "__main__":
    analyze(params=from_section(AnalyzeConfig, load_params(), "analyze").sql_params())
