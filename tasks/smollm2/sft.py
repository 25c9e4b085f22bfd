"""Prefect task of the smollm2 sft stage (`rlvr.smollm2.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.smollm2.family import TrainingParams, train_sft
from rlvr.training.lm import SFTParams


@task(name="train-sft")
def train_sft_task(layout: Layout, cfg: SFTParams, models: ModelsParams,
                   training: TrainingParams) -> dict:
    """Fine-tune the base on reference solutions."""
    return train_sft(layout, cfg, models, training, progress=True)
