"""Prefect tasks of the decisive stage: wrappers of `rlvr.decisive.positions`."""

from __future__ import annotations

from prefect import task

from rlvr.decisive import positions
from rlvr.decisive.positions import DecisiveJob, DecisiveParams
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from tasks.retry import TRANSIENT_RETRIES


@task(name="plan-decisiveness")
def plan_decisive_task(cfg: DecisiveParams, grader: str, models: ModelsParams,
                       layout: Layout) -> list[DecisiveJob]:
    """Check every input, then claim the outputs; one job per generator."""
    jobs = positions.plan_decisive(cfg, grader, models, layout)
    positions.claim_outputs(layout)
    return jobs


@task(name="measure-decisiveness", task_run_name="measure-{job.generator}", **TRANSIENT_RETRIES)
def measure_task(job: DecisiveJob, cfg: DecisiveParams, grader: str) -> dict:
    """Measure one generator's responses into its part file."""
    return positions.measure_generator(job, cfg, grader, progress=True)


@task(name="publish-decisiveness")
def publish_task(layout: Layout, runs: list[dict], cfg: DecisiveParams) -> None:
    """Gate every part, drop stale parts and mark the table complete."""
    positions.publish(layout, runs, cfg)


@task(name="detect-decisive", **TRANSIENT_RETRIES)
def detection_task(layout: Layout, cfg: DecisiveParams, runs: list[dict]) -> dict:
    """Run sql/decisive, write its results and the metrics; return the metrics."""
    metrics = positions.headline(positions.run_detection(layout, cfg), runs, cfg)
    positions.write_metrics(layout, metrics)
    return metrics
