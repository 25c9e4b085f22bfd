"""Analyze stage: the study's analyses as SQL over the token table.

Run: `python -m flows.analyze` (what `dvc repro analyze` runs); reads params.yaml `analyze` and
the complete tables under data/, writes data/analysis/<query>.parquet, the curves to
data/plots/analysis_*.csv and the headline numbers to data/metrics/analysis.json.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.study import load_study
from rlvr.tokens.analysis import AnalyzeParams, check_tokens_complete
from tasks.analyze import run_analyses_task, write_metrics_task
from tasks.linking import run_stage
from tasks.results import publish_results


@flow(name="analyze")
def analyze(cfg: AnalyzeParams, data_root: str = DATA_ROOT) -> dict[str, int]:
    """Run every sql/analyze/agg_* file with the analyze knobs and save the results."""
    logger = get_run_logger()
    layout = Layout(data_root)
    # aggregate the token table: one parquet result per query, curves as plot CSVs
    rows = run_analyses_task(layout, cfg)
    logger.info("analyses: %s", rows)
    # headline numbers for `dvc metrics`
    n_pairs = write_metrics_task(layout, cfg)
    logger.info("metrics for %d pairs -> %s", n_pairs, layout.metrics("analysis"))
    # results in the UI: headline numbers and links to the outputs
    publish_results(rows, layout)
    return rows


def main() -> None:
    run_stage(analyze, load_study().section(AnalyzeParams, "analyze", Layout()),
              preflight=lambda: check_tokens_complete(Layout()))


if __name__ == "__main__":
    run_main(main)
