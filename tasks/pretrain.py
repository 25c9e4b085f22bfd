"""Prefect task of the pretrain stage: the base model (`rlvr.training.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.config import ModelConfig, PretrainConfig, TaskConfig
from rlvr.training.family import pretrain_base


@task(name="pretrain-base")
def pretrain_base_task(train_path: str, out_dir: str, loss_path: str, task_cfg: TaskConfig,
                       model_cfg: ModelConfig, cfg: PretrainConfig) -> dict[str, float]:
    """Pretrain the base model on the task corpus."""
    return pretrain_base(train_path, out_dir, loss_path, task_cfg, model_cfg, cfg, progress=True)
