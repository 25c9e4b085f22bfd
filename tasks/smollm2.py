"""Prefect tasks of the smollm2 family stages: wrappers of `rlvr.smollm2.family`."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.smollm2 import family
from rlvr.smollm2.task import ArithmeticParams
from rlvr.smollm2.weights import WeightsParams
from rlvr.training.grpo import GRPOParams
from rlvr.training.lm import SFTParams
from tasks.retry import TRANSIENT_RETRIES


@task(name="convert-base", **TRANSIENT_RETRIES)
def convert_base_task(layout: Layout, cfg: WeightsParams) -> dict:
    """Fetch the pinned GGUF (cached) and convert it to the base model directory."""
    return family.convert_base(layout, cfg)


@task(name="prepare-task")
def prepare_task_task(layout: Layout, cfg: ArithmeticParams) -> dict:
    """Write the demo/train/eval splits."""
    return family.prepare_task(layout, cfg)


@task(name="train-rl")
def train_rl_task(layout: Layout, cfg: GRPOParams, models: ModelsParams, grader: str,
                  training: family.TrainingParams) -> dict:
    """GRPO/DAPO from the base, saving checkpoints."""
    return family.train_rl(layout, cfg, models, grader, training, progress=True)


@task(name="train-sft")
def train_sft_task(layout: Layout, cfg: SFTParams, models: ModelsParams,
                   training: family.TrainingParams) -> dict:
    """Fine-tune the base on reference solutions."""
    return family.train_sft(layout, cfg, models, training, progress=True)


@task(name="evaluate-family")
def evaluate_family_task(layout: Layout) -> dict:
    """Held-out accuracies with CIs from the samples table."""
    return family.evaluate_family(layout)
