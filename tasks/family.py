"""Prefect tasks that build the toy model family (`rlvr.family`), one library call each."""

from __future__ import annotations

from prefect import task

from rlvr.config import EvaluateConfig, ModelConfig, PretrainConfig, RLConfig, SFTConfig, TaskConfig
from rlvr.family import (
    evaluate_family,
    prepare_split,
    pretrain_base,
    train_rft,
    train_rl,
    train_sft,
)
from tasks.retry import retry_transient

# training is deterministic CPU work: only the file-writing split task retries (transient I/O)


@task(name="prepare-split", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_transient)
def prepare_split_task(task_cfg: TaskConfig, out_dir: str) -> dict[str, int]:
    """Write the deterministic train/eval split as parquet."""
    return prepare_split(task_cfg, out_dir)


@task(name="pretrain-base")
def pretrain_base_task(train_path: str, out_dir: str, loss_path: str, task_cfg: TaskConfig,
                       model_cfg: ModelConfig, cfg: PretrainConfig) -> dict[str, float]:
    """Pretrain the base model on the task corpus."""
    return pretrain_base(train_path, out_dir, loss_path, task_cfg, model_cfg, cfg, progress=True)


@task(name="train-rl")
def train_rl_task(base_dir: str, train_path: str, out_dir: str, steps_dir: str, log_path: str,
                  cfg: RLConfig) -> dict[str, float]:
    """GRPO/DAPO from the base model, saving checkpoints."""
    return train_rl(base_dir, train_path, out_dir, steps_dir, log_path, cfg, progress=True)


@task(name="train-sft")
def train_sft_task(base_dir: str, train_path: str, out_dir: str, loss_path: str,
                   cfg: SFTConfig) -> dict[str, float]:
    """Fine-tune the base on reference solutions."""
    return train_sft(base_dir, train_path, out_dir, loss_path, cfg, progress=True)


@task(name="train-rft")
def train_rft_task(base_dir: str, train_path: str, out_dir: str, loss_path: str,
                   cfg: SFTConfig) -> dict[str, float]:
    """Fine-tune the base on its own correct samples."""
    return train_rft(base_dir, train_path, out_dir, loss_path, cfg, progress=True)


@task(name="evaluate-models")
def evaluate_models_task(models_root: str, eval_path: str, metrics_path: str, cfg: EvaluateConfig,
                         checkpoints_dir: str, checkpoint_plot: str) -> dict[str, float]:
    """Held-out accuracy of every family model and RL checkpoint."""
    return evaluate_family(models_root, eval_path, metrics_path, cfg, checkpoints_dir,
                           checkpoint_plot, progress=True)
