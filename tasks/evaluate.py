"""Prefect task of the evaluate stage: held-out accuracies (`rlvr.training.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.training.evaluation import EvaluateParams
from rlvr.training.family import evaluate_family


@task(name="evaluate-models")
def evaluate_models_task(layout: Layout, cfg: EvaluateParams,
                         models: ModelsParams) -> dict[str, float]:
    """Held-out accuracy of every family model and RL checkpoint."""
    return evaluate_family(layout, cfg, models, progress=True)
