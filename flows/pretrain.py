"""Pretrain stage: the base model, next-token training on the task corpus.

Run: `python -m flows.pretrain` (what `dvc repro pretrain` runs); reads the `task`, `model` and
`pretrain` sections of params.yaml, writes data/models/base and data/plots/pretrain_loss.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import ModelConfig, PretrainConfig, TaskConfig, from_section, load_params
from tasks.pretrain import pretrain_base_task


@flow(name="pretrain")
def pretrain(
    task_cfg: TaskConfig,
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    train_path: str = "data/task/train.parquet",
    out_dir: str = "data/models/base",
    loss_path: str = "data/plots/pretrain_loss.csv",
) -> dict[str, float]:
    """Build and pretrain the base model."""
    logger = get_run_logger()
    # train and save the base model with its loss curve
    summary = pretrain_base_task(train_path, out_dir, loss_path, task_cfg, model_cfg, cfg)
    logger.info("base: %(n_params)s params, final loss %(final_loss).4f, %(seconds).0f s", summary)
    return summary


if __name__ == "__main__":
    params = load_params()
    pretrain(from_section(TaskConfig, params, "task"), from_section(ModelConfig, params, "model"),
             from_section(PretrainConfig, params, "pretrain"))
