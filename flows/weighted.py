"""Divergence-weighted advantage grid: every (variant, seed) run, then the comparison.

Whole grid and summary:   python -m flows.weighted
One variant's seeds:      python -m flows.weighted --variant k3_old_high --no-summary
Summary of finished runs: python -m flows.weighted --summary-only
Settings come from params.yaml `weighted`; `dvc repro weighted_summary` runs it all through DVC.
"""

from __future__ import annotations

import argparse

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from rlvr.config import WeightedConfig, from_section, load_params
from tasks.weighted import plan_runs, summarize_runs, train_run


@flow(name="weighted", log_prints=True)
def weighted(
    config: WeightedConfig,
    variants: list[str] | None = None,
    train: bool = True,
    summarize: bool = True,
) -> dict:
    """Train the runs of `variants` (all when None), then summarise the full grid."""
    out: dict = {}
    # plan: one run per (variant, seed)
    names, seeds = plan_runs(config, variants) if train else ([], [])
    # train and evaluate: one task per run, all from the base model
    futures = train_run.map(unmapped(config), names, seeds)
    out["runs"] = [future.result() for future in futures]
    # compare: tables, plots and metrics over every run of the grid
    if summarize:
        out["metrics"] = summarize_runs(config)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", help="train only this variant (repeatable)")
    parser.add_argument("--no-summary", action="store_true", help="skip the summary")
    parser.add_argument("--summary-only", action="store_true", help="only summarise runs")
    args = parser.parse_args()
    cfg = from_section(WeightedConfig, load_params(), "weighted")
    runner = ThreadPoolTaskRunner(max_workers=cfg.workers)
    weighted.with_options(task_runner=runner)(
        cfg, variants=args.variant, train=not args.summary_only, summarize=not args.no_summary
    )
