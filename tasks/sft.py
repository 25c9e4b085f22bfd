"""Prefect tasks of the sft stage: the SFT and RFT controls (`rlvr.training.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.training.family import train_rft, train_sft
from rlvr.training.lm import SFTParams


@task(name="train-sft")
def train_sft_task(layout: Layout, cfg: SFTParams, testbed: str) -> dict[str, float]:
    """Fine-tune the base on solutions written in the `sft.data` style."""
    return train_sft(layout, cfg, testbed, progress=True)


@task(name="train-rft")
def train_rft_task(layout: Layout, cfg: SFTParams) -> dict[str, float]:
    """Fine-tune the base on its own correct samples."""
    return train_rft(layout, cfg, progress=True)
