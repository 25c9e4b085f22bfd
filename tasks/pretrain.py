"""Prefect task of the pretrain stage: the base model (`rlvr.training.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.testbed.model import ModelShape
from rlvr.testbed.split import TaskParams
from rlvr.training.family import pretrain_base
from rlvr.training.lm import PretrainParams

# training is deterministic CPU work with no transient failure mode: no retries


@task(name="pretrain-base")
def pretrain_base_task(layout: Layout, task_cfg: TaskParams, shape: ModelShape,
                       cfg: PretrainParams) -> dict[str, float]:
    """Pretrain the base model on the task corpus."""
    return pretrain_base(layout, task_cfg, shape, cfg, progress=True)
