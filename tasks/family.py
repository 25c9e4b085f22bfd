"""Prefect tasks of the family stages prepare, base, rl and sft (`rlvr.training.family`).

Training is deterministic CPU work with no transient failure mode: only the base (which may
download a pinned wheel once) retries.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from rlvr.families import get_family
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.training import family as stages
from rlvr.training.grpo import GRPOParams
from rlvr.training.lm import SFTParams
from tasks.retry import TRANSIENT_RETRIES


@task(name="prepare-split", **TRANSIENT_RETRIES)
def prepare_task(family: str, layout: Layout, task_cfg: Any) -> dict[str, int]:
    """Write the family's eval (and train) split."""
    return stages.prepare(get_family(family), layout, task_cfg)


@task(name="build-base", **TRANSIENT_RETRIES)
def build_base_task(family: str, layout: Layout, task_cfg: Any, sections: dict) -> dict:
    """Pretrain or convert the family's base model."""
    return stages.build_base(get_family(family), layout, task_cfg, sections, progress=True)


@task(name="train-rl")
def train_rl_task(family: str, layout: Layout, cfg: GRPOParams, models: ModelsParams,
                  grader: str) -> dict[str, float]:
    """GRPO/DAPO from the base model, saving checkpoints."""
    return stages.train_rl(get_family(family), layout, cfg, models, grader, progress=True)


@task(name="train-control")
def train_control_task(family: str, layout: Layout, name: str, task_cfg: Any, cfg: SFTParams,
                       models: ModelsParams, grader: str) -> dict[str, float]:
    """Fine-tune the base into control `name` on the data the family makes for it."""
    return stages.train_control(get_family(family), layout, name, task_cfg, cfg, models, grader,
                                progress=True)
