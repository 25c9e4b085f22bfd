"""Prefect tasks of the decisive stage: wrappers of `rlvr.decisive.positions`."""

from __future__ import annotations

import torch
from prefect import task

from rlvr.decisive import positions
from rlvr.decisive.positions import DecisiveParams
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from tasks.retry import TRANSIENT_RETRIES


@task(name="prepare-decisiveness")
def prepare_task(layout: Layout) -> None:
    """Withdraw the table's completion marker before rewriting it."""
    positions.prepare(layout)


@task(name="measure-decisiveness", task_run_name="measure-{generator}", **TRANSIENT_RETRIES)
def measure_task(generator: str, cfg: DecisiveParams, grader: str, models: ModelsParams,
                 layout: Layout) -> dict:
    """Measure one generator's responses into its part file."""
    torch.set_num_threads(cfg.resources.torch_threads)
    return positions.measure_generator(generator, cfg, grader, models, layout, progress=True)


@task(name="publish-decisiveness")
def publish_task(layout: Layout, runs: list[dict]) -> None:
    """Drop stale parts and mark the table complete."""
    positions.publish(layout, runs)


@task(name="detect-decisive", **TRANSIENT_RETRIES)
def detection_task(layout: Layout, cfg: DecisiveParams, runs: list[dict]) -> dict:
    """Run sql/decisive, write its results and the metrics; return the metrics."""
    metrics = positions.headline(positions.run_detection(layout, cfg), runs, cfg)
    positions.write_metrics(layout, metrics)
    return metrics
