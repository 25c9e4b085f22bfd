"""Prefect tasks of the sft stage: the SFT and RFT controls (`rlvr.training.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.config import SFTConfig
from rlvr.training.family import train_rft, train_sft


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
