"""Prefect tasks of the divergence-weighted advantage grid (`rlvr.weighted`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams, ModelSpec
from rlvr.weighted import grid, summary
from rlvr.weighted.grid import WeightedParams
from tasks.retry import TRANSIENT_RETRIES


@task(name="plan-weighted-runs")
def plan_runs(config: WeightedParams, models: ModelsParams, variants: list[str] | None,
              layout: Layout) -> tuple[list[str], list[int], ModelSpec]:
    """Check the inputs, then claim the outputs: variant names and seeds of every run to do, as
    two aligned lists, and the checked spec of the model every run starts from."""
    runs, base = grid.plan_grid(config, models, variants, layout)
    return [v for v, _ in runs], [s for _, s in runs], base


@task(name="train-weighted-run", task_run_name="{variant}-seed{seed}")
def train_run(config: WeightedParams, base: ModelSpec, layout: Layout, grader: str, variant: str,
              seed: int) -> dict[str, float]:
    """Train one (variant, seed) from the base model and evaluate it; returns final accuracy."""
    return grid.run_grid_cell(config, base, layout, variant, seed, grader, progress=True)


@task(name="summarize-weighted-grid", **TRANSIENT_RETRIES)
def summarize_runs(config: WeightedParams, layout: Layout) -> dict:
    """Write the training/results tables, plot CSVs and metrics; returns the metrics."""
    return summary.summarize_grid(config, layout)
