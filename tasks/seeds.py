"""Prefect tasks of the seed grid (`rlvr.seeds`): one workspace per training seed, the spread."""

from __future__ import annotations

from prefect import task

from rlvr import seeds
from rlvr.config import PARAMS_FILE
from rlvr.study import load_study


@task(name="check-seeds")
def check_seeds_task(repo: str, chosen: list[int]) -> list[str]:
    """Stop before anything is written unless the study trains and the seeds are valid;
    returns the knobs each seed shifts."""
    study = load_study(f"{repo}/{PARAMS_FILE}")
    seeds.check_seeds(study, chosen)
    return seeds.seed_keys(study)


@task(name="seed-workspace", task_run_name="seed-{k}")
def seed_workspace_task(repo: str, k: int) -> str:
    """Seed k's workspace (the workspace itself for 0), written or brought up to date."""
    return str(seeds.make_seed_workspace(repo, k))


@task(name="summarize-seeds")
def summarize_seeds_task(repo: str, chosen: list[int], seconds: dict[int, float]) -> dict:
    """seeds/summary.json and seeds/summary.md: every headline number and verdict per seed."""
    return seeds.summarize_seeds(repo, chosen, seconds)
