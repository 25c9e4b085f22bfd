"""Prefect task of the smollm2 rl stage (`rlvr.smollm2.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.smollm2.family import train_rl
from rlvr.training.grpo import GRPOParams


@task(name="train-rl")
def train_rl_task(layout: Layout, cfg: GRPOParams, models: ModelsParams, grader: str) -> dict:
    """GRPO/DAPO from the base, saving checkpoints."""
    return train_rl(layout, cfg, models, grader, progress=True)
