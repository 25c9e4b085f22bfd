"""Budgeted cross-sampling sweep: every (direction, rule, threshold, seed) cell, then the curves.

Run:   python -m flows.cross_sample        (what `dvc repro cross_sample` runs)
Settings come from params.yaml `cross_sample`. Writes data/cross/{samples,tokens}/ (views
`cross_samples`, `cross_tokens`), data/plots/cross_accuracy_by_budget.csv and
data/metrics/cross.json. Finished cells are kept on a rerun with the same settings.
"""

from __future__ import annotations

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from rlvr.config import CrossSampleConfig, from_section, load_params
from tasks.cross_sample import (
    load_prompts,
    plan_grid,
    plan_matched_random,
    publish,
    sample_cell,
    summarize,
)


@flow(name="cross_sample", log_prints=True)
def cross_sample(config: CrossSampleConfig) -> dict:
    """Decode the fixed-threshold grid, then random cells matched to the js budgets."""
    # inputs: prompts and the fixed grid
    records = load_prompts(config.prompts, config.n_prompts)
    cells = plan_grid(config)
    # fixed thresholds: one task per cell
    summaries = [f.result() for f in sample_cell.map(cells, unmapped(config), unmapped(records))]
    # random control: rates matched to the budget each js threshold reached
    if config.match_random:
        random_cells = plan_matched_random(config, cells)
        futures = sample_cell.map(random_cells, unmapped(config), unmapped(records))
        summaries += [f.result() for f in futures]
        cells = cells + random_cells
    # outputs: tables, curve and metrics
    counts = publish(config, cells)
    metrics = summarize(config)
    return {"cells": summaries, "rows": counts, "metrics": metrics}


if __name__ == "__main__":
    cfg = from_section(CrossSampleConfig, load_params(), "cross_sample")
    cross_sample.with_options(task_runner=ThreadPoolTaskRunner(max_workers=cfg.max_parallel))(cfg)
