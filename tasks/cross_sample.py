"""Prefect tasks of the cross-sampling sweep (`rlvr.cross`)."""

from __future__ import annotations

from prefect import get_run_logger, task

from rlvr.cross import budgets, sweep
from rlvr.cross.sweep import CrossCell, CrossParams
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams, ModelSpec
from rlvr.store.atomic import sweep_debris
from rlvr.testbed.prompts import PromptRecord
from tasks.retry import TRANSIENT_RETRIES


@task(name="plan-cross-grid")
def plan_grid(config: CrossParams, models: ModelsParams, prompts: str, unfit_prompts: str,
              layout: Layout) -> tuple[list[CrossCell], dict[str, ModelSpec], list[PromptRecord]]:
    """Check every input, then claim the outputs: the fixed-threshold (direction, rule,
    threshold, seed) cells, the pair's specs and the prompts asked."""
    specs, records, dropped = sweep.plan_inputs(config, models, prompts,
                                                unfit_prompts == "drop", layout)
    if dropped:
        get_run_logger().warning("dropped %d prompts that do not fit a model "
                                 "(sample.unfit_prompts: drop)", dropped)
    cells = sweep.grid_cells(config.directions, config.base_model, config.tuned_model,
                             config.rules, config.seeds)
    sweep_debris(*layout.outputs("cross_sample"))
    return cells, specs, records


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
