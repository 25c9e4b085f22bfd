"""Budgeted cross-sampling sweep: every (direction, rule, threshold, seed) cell, then the curves.

Run:   python -m flows.cross_sample        (what `dvc repro cross_sample` runs)
Reads params.yaml `cross_sample`, `models` (which checkpoints the pair loads) and
`sample.prompts`/`sample.grader`/`sample.unfit_prompts` (the prompts asked, how answers are
graded, what to do with prompts that do not fit). Writes
data/cross/{samples,tokens}/ (views `cross_samples`, `cross_tokens`),
data/plots/cross_accuracy_by_budget.csv and data/metrics/cross.json. Finished cells are kept on
a rerun with the same settings.
"""

from __future__ import annotations

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from rlvr.config import from_section, load_params, run_main
from rlvr.cross.sweep import CrossParams
from rlvr.generation.samples import SampleParams
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from tasks.cross_sample import (
    plan_grid,
    plan_matched_random,
    publish,
    sample_cell,
    summarize,
)
from tasks.linking import run_stage
from tasks.results import publish_results


@flow(name="cross_sample", log_prints=True)
def cross_sample(config: CrossParams, models: ModelsParams, prompts: str, grader: str,
                 data_root: str = DATA_ROOT, unfit_prompts: str = "error") -> dict:
    """Decode the fixed-threshold grid, then random cells matched to the js budgets."""
    layout = Layout(data_root)
    # inputs, checked before any output is touched: the pair's models, prompts, the fixed grid
    cells, specs, records = plan_grid(config, models, prompts, unfit_prompts, layout)
    shared = [unmapped(x) for x in (specs, records, config, grader, layout)]
    # fixed thresholds: one task per cell
    summaries = [f.result() for f in sample_cell.map(cells, *shared)]
    # random control: rates matched to the budget each js threshold reached
    if config.match_random:
        random_cells = plan_matched_random(layout, cells)
        summaries += [f.result() for f in sample_cell.map(random_cells, *shared)]
        cells = cells + random_cells
    # outputs: tables, curve and metrics
    counts = publish(layout, cells)
    metrics = summarize(layout, config)
    # results in the UI: headline numbers and links to the outputs
    publish_results(metrics, layout)
    return {"cells": summaries, "rows": counts, "metrics": metrics}


def main() -> None:
    params = load_params()
    cfg = from_section(CrossParams, params, "cross_sample")
    asked = from_section(SampleParams, params, "sample")
    runner = ThreadPoolTaskRunner(max_workers=cfg.resources.max_parallel)
    run_stage(cross_sample.with_options(task_runner=runner),
              cfg, from_section(ModelsParams, params, "models"), asked.prompts, asked.grader,
              unfit_prompts=asked.unfit_prompts)


if __name__ == "__main__":
    run_main(main)
