"""Cross-sampling at matched budgets: endpoints (the pilot), calibrated rules, then the curves.

Run:   python -m flows.cross_sample        (what `dvc repro cross_sample` runs)
Reads params.yaml `cross_sample`, `models` (which checkpoints the pair loads), the family's
eval split and grader, and `sample.unfit_prompts` (what to do with prompts that do not fit).
Writes
data/cross/cells/ (every cell run), data/cross/{samples,tokens}/ (the final cells: views
`cross_samples`, `cross_tokens`), data/cross/calibration.parquet, data/cross/paired.parquet
(paired comparisons), data/cross/{gate_overlap,fixed_thresholds,mixing_shortcut}.parquet (the
companion's shortcuts measured), the plots data/plots/cross_accuracy_by_budget.csv and
cross_rule_vs_random.csv, and data/metrics/cross.json. Every arm (forward, backward,
extrapolation, top-K mixing: `cross_sample.arms`) runs through the same endpoints, calibration
and seeds. Finished cells are kept on a rerun with the same settings.
"""

from __future__ import annotations

from prefect import flow, unmapped

from rlvr.config import run_main
from rlvr.cross.sweep import CrossParams, plan_inputs
from rlvr.generation.samples import SampleParams
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.study import load_study
from tasks.cross_sample import (
    plan_endpoints,
    plan_per_response_random,
    plan_round,
    publish,
    sample_cell,
    summarize,
)
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.runners import RunnerParams, make_runner


@flow(name="cross_sample", log_prints=True)
def cross_sample(config: CrossParams, models: ModelsParams, prompts: str, grader: str,
                 data_root: str = DATA_ROOT, unfit_prompts: str = "error") -> dict:
    """Decode every arm's endpoints, calibrate every rule to its budgets, publish, summarise."""
    layout = Layout(data_root)
    # inputs, checked before any output is touched: the pair's models, the prompts; the
    # endpoints, whose budget-0 cells are the pilot
    endpoints, specs, records = plan_endpoints(config, models, prompts, unfit_prompts, layout)
    shared = [unmapped(x) for x in (specs, records, config, grader, layout)]
    summaries = [f.result() for f in sample_cell.map(endpoints, *shared)]
    pilot = [c for c in endpoints if c.rule == "none"]
    # calibration rounds: thresholds from the pilot, then re-picked where a budget missed
    cells, previous = [], []
    for round_ in range(1, config.calibration_rounds + 1):
        previous = plan_round(config, layout, round_, pilot, previous)
        summaries += [f.result() for f in sample_cell.map(previous, *shared)]
        cells += previous
    # random control copying each js response's share (random_match: per_response)
    if config.random_match == "per_response":
        matched = plan_per_response_random(layout, cells, records, config)
        summaries += [f.result() for f in sample_cell.map(matched, *shared)]
        cells += matched
    # outputs: tables, calibration, curves and metrics
    counts = publish(layout, endpoints, cells, config)
    metrics = summarize(layout, config)
    # results in the UI: headline numbers and links to the outputs
    publish_results(metrics, layout)
    return {"cells": summaries, "rows": counts, "metrics": metrics}


def main() -> None:
    study = load_study()
    cfg = study.section(CrossParams, "cross_sample", Layout())
    unfit = study.section(SampleParams, "sample").unfit_prompts
    runner = make_runner(study.section(RunnerParams, "runner"), cfg.resources.max_parallel)
    # "": the family's eval split (data/task/eval.parquet)
    run_stage(cross_sample.with_options(task_runner=runner), cfg, study.models, "", study.grader,
              unfit_prompts=unfit,
              preflight=lambda: plan_inputs(cfg, study.models, "", unfit == "drop", Layout()))


if __name__ == "__main__":
    run_main(main)
