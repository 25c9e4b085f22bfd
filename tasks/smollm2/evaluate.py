"""Prefect task of the smollm2 evaluate stage (`rlvr.smollm2.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.smollm2.family import evaluate_family


@task(name="evaluate-family")
def evaluate_family_task(layout: Layout) -> dict:
    """Held-out accuracies with CIs from the samples table."""
    return evaluate_family(layout)
