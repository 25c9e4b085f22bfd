"""Prefect task wrapping the HTML report builder (`rlvr.report.page`)."""

from __future__ import annotations

from prefect import task

from rlvr.report.blocks import ReportOptions
from rlvr.report.page import build_report
from tasks.retry import TRANSIENT_RETRIES


@task(name="build-report", **TRANSIENT_RETRIES)
def build_report_task(options: ReportOptions) -> dict[str, int]:
    """Render data/report/index.html from whatever the pipeline has produced."""
    return build_report(options)
