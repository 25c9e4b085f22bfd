"""Prefect tasks of the cross-sampling sweep (`rlvr.cross`)."""

from __future__ import annotations

from prefect import get_run_logger, task

from rlvr.cross import budgets, calibration, sweep
from rlvr.cross.sweep import CrossCell, CrossParams
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams, ModelSpec
from rlvr.store.atomic import sweep_debris
from rlvr.testbed.prompts import PromptRecord
from tasks.retry import TRANSIENT_RETRIES


@task(name="plan-cross-endpoints")
def plan_endpoints(
    config: CrossParams, models: ModelsParams, prompts: str, unfit_prompts: str, layout: Layout,
) -> tuple[list[CrossCell], dict[str, ModelSpec], list[PromptRecord]]:
    """Check every input, then claim the outputs: the budget-0 (pilot) and budget-1 cells of
    every arm and seed, the pair's specs and the prompts asked."""
    specs, records, dropped = sweep.plan_inputs(config, models, prompts,
                                                unfit_prompts == "drop", layout)
    if dropped:
        get_run_logger().warning("dropped %d prompts that do not fit a model "
                                 "(sample.unfit_prompts: drop)", dropped)
    cells = sweep.endpoint_cells(config.grid(), config.base_model, config.tuned_model,
                                 config.seeds)
    sweep_debris(*layout.outputs("cross_sample"))
    return cells, specs, records


@task(name="cross-sample-cell", task_run_name="{cell.name}", **TRANSIENT_RETRIES)
def sample_cell(cell: CrossCell, specs: dict[str, ModelSpec], records: list[PromptRecord],
                config: CrossParams, grader: str, layout: Layout) -> dict:
    """Cross-sample one cell and write its part files; returns a small summary."""
    return sweep.run_cell(cell, specs, records, config, grader, layout, progress=True)


@task(name="plan-calibration-round", task_run_name="round-{round_}")
def plan_round(config: CrossParams, layout: Layout, round_: int, pilot: list[CrossCell],
               previous: list[CrossCell]) -> list[CrossCell]:
    """Thresholds of one calibration round (round 1 from the pilot; then the misses)."""
    return calibration.plan_round(config, layout, round_, pilot, previous)


@task(name="plan-per-response-random")
def plan_per_response_random(layout: Layout, cells: list[CrossCell], records: list[PromptRecord],
                             config: CrossParams) -> list[CrossCell]:
    """Random cells copying each final js response's switch share (arms that list random)."""
    with_random = {(arm.name, b) for arm in config.grid() for r, b in arm.points if r == "random"}
    final = [c for c in calibration.final_cells(layout, cells)
             if c.rule == "js" and (c.arm, c.target_budget) in with_random]
    return calibration.per_response_random(layout, final, records, config.samples_per_prompt)


@task(name="publish-cross-tables", **TRANSIENT_RETRIES)
def publish(layout: Layout, endpoints: list[CrossCell], cells: list[CrossCell],
            config: CrossParams) -> dict[str, int]:
    """Publish the endpoints and final rounds, and the calibration table; returns row counts."""
    final = calibration.write_calibration(layout, cells, config.budget_tolerance)
    return sweep.publish_cross(layout, endpoints + final)


@task(name="summarize-cross-budgets", **TRANSIENT_RETRIES)
def summarize(layout: Layout, config: CrossParams) -> dict:
    """Curve and rule-vs-random plot CSVs and the metrics JSON; returns the metrics."""
    return budgets.write_budget_outputs(layout, config)
