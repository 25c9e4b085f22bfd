"""Prefect task of the prepare stage: the train/eval split (`rlvr.testbed.split`)."""

from __future__ import annotations

from prefect import task

from rlvr.config import TaskConfig
from rlvr.testbed.split import prepare_split
from tasks.retry import retry_transient


@task(name="prepare-split", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_transient)
def prepare_split_task(task_cfg: TaskConfig, out_dir: str) -> dict[str, int]:
    """Write the deterministic train/eval split as parquet."""
    return prepare_split(task_cfg, out_dir)
