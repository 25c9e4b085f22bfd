"""Divergence-weighted advantage grid: every (variant, seed) run, then the comparison.

Whole grid and summary:   python -m flows.weighted
One variant's seeds:      python -m flows.weighted --variant k3_old_high --no-summary
Summary of finished runs: python -m flows.weighted --summary-only

Reads params.yaml `weighted`, `weighted_variants` (the grid; opt-in), `models` (the base every
run starts from) and the family's train and eval splits and grader; `dvc repro weighted_summary`
runs it all through DVC.
"""

from __future__ import annotations

import argparse

from prefect import flow, unmapped

from rlvr.config import run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.study import load_study
from rlvr.weighted.grid import WeightedParams, check_grid
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.runners import RunnerParams, make_runner
from tasks.weighted import plan_runs, summarize_runs, train_run


@flow(name="weighted", log_prints=True)
def weighted(
    config: WeightedParams,
    models: ModelsParams,
    grader: str,
    variants: list[str] | None = None,
    train: bool = True,
    summarize: bool = True,
    data_root: str = DATA_ROOT,
) -> dict:
    """Train the runs of `variants` (all when None), then summarise the full grid."""
    layout = Layout(data_root)
    out: dict = {}
    # plan: inputs checked, one run per (variant, seed), all from the same model
    names, seeds, base = (plan_runs(config, models, variants, layout) if train
                          else ([], [], models.spec(config.model, layout)))
    # train and evaluate: one task per run
    futures = train_run.map(unmapped(config), unmapped(base), unmapped(layout), unmapped(grader),
                            names, seeds)
    out["runs"] = [future.result() for future in futures]
    # compare: tables, plots and metrics over every run of the grid
    if summarize:
        out["metrics"] = summarize_runs(config, layout)
    # results in the UI: headline numbers and links to the outputs
    publish_results(out, layout)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", help="train only this variant (repeatable)")
    parser.add_argument("--no-summary", action="store_true", help="skip the summary")
    parser.add_argument("--summary-only", action="store_true", help="only summarise runs")
    args = parser.parse_args()
    study = load_study()
    cfg = study.section(WeightedParams, "weighted", Layout())
    runner = make_runner(study.section(RunnerParams, "runner"), cfg.resources.workers)
    run_stage(weighted.with_options(task_runner=runner),
              cfg, study.models, study.grader, variants=args.variant,
              train=not args.summary_only, summarize=not args.no_summary,
              preflight=None if args.summary_only else
              lambda: check_grid(cfg, study.models, args.variant, Layout()))


if __name__ == "__main__":
    run_main(main)
