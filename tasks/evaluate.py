"""Prefect task of the evaluate stage: accuracies from the samples table
(`rlvr.generation.accuracy`)."""

from __future__ import annotations

from prefect import task

from rlvr.families import get_family
from rlvr.generation.accuracy import evaluate_samples
from rlvr.layout import Layout


@task(name="evaluate-models")
def evaluate_task(family: str, layout: Layout) -> dict[str, float]:
    """Held-out accuracy of every sampled model, from the samples table."""
    return evaluate_samples(layout, get_family(family).describe)
