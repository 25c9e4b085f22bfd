"""Report stage: one self-contained HTML page with the study's figures and a token viewer.

Run: `python -m flows.report` (what `dvc repro report` runs); reads params.yaml `report` and
`models` (the token viewer loads each shown pair's models for their top-k candidates) and
writes data/report/index.html. Sections whose inputs are missing say which stage produces them.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.report.blocks import ReportOptions, ReportParams
from rlvr.study import load_study
from tasks.linking import run_stage
from tasks.report import build_report_task
from tasks.results import publish_results


@flow(name="report")
def report(cfg: ReportParams, models: ModelsParams, data_root: str = DATA_ROOT) -> dict[str, int]:
    """Build the report from the tables of the layout."""
    logger = get_run_logger()
    layout = Layout(data_root)
    # render and write atomically
    summary = build_report_task(ReportOptions(cfg, models, layout))
    logger.info("report: %s figures, %s notices (%s figures could not be drawn), %s bytes -> %s",
                summary["figures"], summary["notices"], summary["failures"], summary["bytes"],
                layout.report_dir / "index.html")
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    study = load_study()
    run_stage(report, study.section(ReportParams, "report", Layout()), study.models)


if __name__ == "__main__":
    run_main(main)
