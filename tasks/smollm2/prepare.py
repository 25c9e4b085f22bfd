"""Prefect task of the smollm2 prepare stage (`rlvr.smollm2.task`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.smollm2.task import ArithmeticParams, prepare_task


@task(name="prepare-task")
def prepare_task_task(layout: Layout, cfg: ArithmeticParams) -> dict:
    """Write the demo/train/eval splits."""
    return prepare_task(layout, cfg)
