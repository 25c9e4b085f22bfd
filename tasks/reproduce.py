"""Prefect tasks that run the DVC pipeline and stream its output to the run's logs."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from rlvr import dvc
from rlvr.config import load_params
from tasks.retry import TRANSIENT_RETRIES


@task
def plan_command(targets: list[str], params: dict[str, Any], force: bool, repo: str) -> list[str]:
    """The dvc command for these targets and parameter overrides (validated against params.yaml)."""
    overrides = dvc.param_overrides(load_params(f"{repo}/params.yaml"), params)
    return dvc.dvc_command(targets, overrides, force)


@task(**TRANSIENT_RETRIES)
def run_dvc(command: list[str], repo: str) -> list[str]:
    """Run one dvc command, logging every line of its output; returns the command."""
    dvc.run_dvc(command, repo, get_run_logger().info)
    return command
