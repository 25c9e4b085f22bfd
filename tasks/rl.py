"""Prefect task of the rl stage: GRPO/DAPO from the base (`rlvr.training.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.config import RLConfig
from rlvr.training.family import train_rl


@task(name="train-rl")
def train_rl_task(base_dir: str, train_path: str, out_dir: str, steps_dir: str, log_path: str,
                  cfg: RLConfig) -> dict[str, float]:
    """GRPO/DAPO from the base model, saving checkpoints."""
    return train_rl(base_dir, train_path, out_dir, steps_dir, log_path, cfg, progress=True)
