"""Prefect task of the rl stage: GRPO/DAPO from the base (`rlvr.training.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.training.family import train_rl
from rlvr.training.grpo import GRPOParams


@task(name="train-rl")
def train_rl_task(layout: Layout, cfg: GRPOParams) -> dict[str, float]:
    """GRPO/DAPO from the base model, saving checkpoints."""
    return train_rl(layout, cfg, progress=True)
