"""Prefect task of the smollm2 convert stage (`rlvr.smollm2.weights`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.smollm2.weights import WeightsParams, convert_base
from tasks.retry import TRANSIENT_RETRIES


@task(name="convert-base", **TRANSIENT_RETRIES)
def convert_base_task(layout: Layout, cfg: WeightsParams) -> dict:
    """Fetch the pinned GGUF (cached) and convert it to the base model directory."""
    return convert_base(layout, cfg)
