"""Prefect tasks of the cross-sampling sweep (`rlvr.cross`)."""

from __future__ import annotations

from prefect import task

from rlvr.cross import budgets, sweep
from rlvr.cross.sweep import CrossCell, CrossParams
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams, ModelSpec
from rlvr.testbed.prompts import PromptRecord, load_prompts
from tasks.retry import TRANSIENT_RETRIES


@task(name="load-cross-prompts", **TRANSIENT_RETRIES)
def load_prompts_task(path: str, n: int, layout: Layout) -> list[PromptRecord]:
    """The first `n` prompts of the sample stage's prompt file."""
    return load_prompts(path, layout)[:n]


@task(name="plan-cross-grid")
def plan_grid(config: CrossParams, models: ModelsParams,
              layout: Layout) -> tuple[list[CrossCell], dict[str, ModelSpec]]:
    """Every fixed-threshold (direction, rule, threshold, seed) cell, and the pair's specs."""
    cells = sweep.grid_cells(config.directions, config.base_model, config.tuned_model,
                             config.rules, config.seeds)
    specs = {n: models.spec(n, layout) for n in (config.base_model, config.tuned_model)}
    return cells, specs


@task(name="cross-sample-cell", task_run_name="{cell.name}", **TRANSIENT_RETRIES)
def sample_cell(cell: CrossCell, specs: dict[str, ModelSpec], records: list[PromptRecord],
                config: CrossParams, grader: str, layout: Layout) -> dict:
    """Cross-sample one grid cell and write its part files; returns a small summary."""
    return sweep.run_cell(cell, specs, records, config, grader, layout, progress=True)


@task(name="plan-matched-random")
def plan_matched_random(layout: Layout, cells: list[CrossCell]) -> list[CrossCell]:
    """Random-rule cells at the pooled budget each js threshold reached."""
    return sweep.matched_random_cells(layout, [c for c in cells if c.rule == "js"])


@task(name="publish-cross-tables", **TRANSIENT_RETRIES)
def publish(layout: Layout, cells: list[CrossCell]) -> dict[str, int]:
    """Drop stale parts and mark both tables complete; returns row counts."""
    return sweep.publish_cross(layout, cells)


@task(name="summarize-cross-budgets", **TRANSIENT_RETRIES)
def summarize(layout: Layout, config: CrossParams) -> dict:
    """Accuracy-by-budget plot CSV and metrics JSON; returns the metrics."""
    return budgets.write_budget_outputs(layout, config)
