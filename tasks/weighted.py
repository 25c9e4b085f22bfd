"""Prefect tasks of the divergence-weighted advantage grid (wrappers of rlvr.weighted.grid)."""

from __future__ import annotations

from prefect import task

from rlvr.config import WeightedConfig
from rlvr.weighted import grid
from tasks.retry import TRANSIENT_RETRIES


@task(name="plan-weighted-runs")
def plan_runs(config: WeightedConfig, variants: list[str] | None) -> tuple[list[str], list[int]]:
    """Variant names and seeds of every run to do, as two aligned lists."""
    runs = grid.grid_runs(config, variants)
    return [v for v, _ in runs], [s for _, s in runs]


@task(name="train-weighted-run", task_run_name="{variant}-seed{seed}")
def train_run(config: WeightedConfig, variant: str, seed: int) -> dict[str, float]:
    """Train one (variant, seed) from the base model and evaluate it; returns final accuracy."""
    return grid.run_grid_cell(config, variant, seed)


@task(name="summarize-weighted-grid", **TRANSIENT_RETRIES)
def summarize_runs(config: WeightedConfig) -> dict:
    """Write the training/results tables, plot CSVs and metrics; returns the metrics."""
    return grid.summarize_grid(config)
