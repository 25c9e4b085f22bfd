"""Prefect tasks of the cross-sampling sweep (thin wrappers over rlvr.cross.sweep)."""

from __future__ import annotations

from prefect import task

from rlvr.config import CrossSampleConfig
from rlvr.cross import sweep
from rlvr.cross.sweep import CrossCell
from rlvr.generation.sampler import SamplingParams
from rlvr.store.tables import pair_name
from rlvr.testbed.prompts import PromptRecord, load_prompt_file
from tasks.retry import TRANSIENT_RETRIES


@task(name="load-cross-prompts", **TRANSIENT_RETRIES)
def load_prompts(path: str, n: int) -> list[PromptRecord]:
    """The first `n` prompts of the prompt file."""
    return load_prompt_file(path)[:n]


@task(name="plan-cross-grid")
def plan_grid(config: CrossSampleConfig) -> list[CrossCell]:
    """Every fixed-threshold (direction, rule, threshold, seed) cell."""
    return sweep.grid_cells(config.directions, config.base_model, config.tuned_model,
                                 config.rules, config.seeds)


@task(name="cross-sample-cell", task_run_name="{cell.name}", **TRANSIENT_RETRIES)
def sample_cell(cell: CrossCell, config: CrossSampleConfig, records: list[PromptRecord]) -> dict:
    """Cross-sample one grid cell and write its part files; returns a small summary."""
    params = SamplingParams(config.temperature, config.top_p, config.max_new_tokens)
    pair = pair_name(config.base_model, config.tuned_model)
    return sweep.run_cell(cell, config.models_dir, records, config.samples_per_prompt,
                               params, config.out_dir, pair, config.batch_size,
                               config.torch_threads)


@task(name="plan-matched-random")
def plan_matched_random(config: CrossSampleConfig, cells: list[CrossCell]) -> list[CrossCell]:
    """Random-rule cells at the pooled budget each js threshold reached."""
    return sweep.matched_random_cells(config.out_dir, [c for c in cells if c.rule == "js"])


@task(name="publish-cross-tables", **TRANSIENT_RETRIES)
def publish(config: CrossSampleConfig, cells: list[CrossCell]) -> dict[str, int]:
    """Drop stale parts and mark both tables complete; returns row counts."""
    return sweep.publish_cross(config.out_dir, cells)


@task(name="summarize-cross-budgets", **TRANSIENT_RETRIES)
def summarize(config: CrossSampleConfig) -> dict:
    """Accuracy-by-budget plot CSV and metrics JSON; returns the metrics."""
    return sweep.write_budget_outputs(config.out_dir, config.plot_csv, config.metrics_json,
                                           config.n_bootstrap, config.alpha,
                                           config.bootstrap_seed)
