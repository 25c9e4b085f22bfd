"""Prefect artifacts of a stage run: its headline numbers and its outputs (`rlvr.results`)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext

from rlvr import dvc, results
from rlvr.layout import Layout
from tasks.linking import stage_name


@task(name="publish-results")
def publish_results(summary: dict, layout: Layout) -> list[str]:
    """A `<stage>-metrics` table (its metrics JSON, else `summary`) and a `<stage>-outputs`
    markdown of the DVC outputs it wrote, linking the report; returns the artifact keys."""
    ctx = FlowRunContext.get()
    assert ctx is not None, "call inside a stage flow"
    stage = stage_name(ctx.flow.name)
    # a flow run outside a DVC checkout (no dvc.yaml here) still shows its summary
    outputs = dvc.stage_outputs(stage) if Path("dvc.yaml").exists() else {}
    metrics = {path: json.loads(Path(path).read_text())
               for path in outputs.get("metrics", []) if Path(path).exists()}
    shown = metrics if len(metrics) > 1 else next(iter(metrics.values()), summary)
    keys = [results.artifact_key(stage, "metrics"), results.artifact_key(stage, "outputs")]
    create_table_artifact(
        key=keys[0], table=results.metric_rows(shown),
        description=f"`{stage}`: headline numbers ({', '.join(metrics) or 'flow summary'})")
    create_markdown_artifact(
        key=keys[1], markdown=results.outputs_markdown(stage, outputs,
                                                      layout.report_dir / "index.html"),
        description=f"`{stage}`: DVC outputs and the report")
    return keys


@task(name="publish-run-summary")
def publish_run_summary(command: list[str], lines: list[str], layout: Layout) -> str:
    """A `reproduce-summary` markdown: the command, stages run and skipped, the report."""
    create_markdown_artifact(
        key="reproduce-summary",
        markdown=results.run_markdown(command, lines, layout.report_dir / "index.html"),
        description="what this pipeline run did")
    return "reproduce-summary"
