"""Prefect task of the prepare stage: the train/eval split (`rlvr.testbed.split`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.testbed.split import TaskParams, prepare_split
from tasks.retry import TRANSIENT_RETRIES


@task(name="prepare-split", **TRANSIENT_RETRIES)
def prepare_split_task(cfg: TaskParams, layout: Layout) -> dict[str, int]:
    """Write the deterministic train/eval split as parquet."""
    return prepare_split(cfg, layout)
