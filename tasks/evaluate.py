"""Prefect task of the evaluate stage: held-out accuracies (`rlvr.training.family`)."""

from __future__ import annotations

from prefect import task

from rlvr.config import EvaluateConfig
from rlvr.training.family import evaluate_family


@task(name="evaluate-models")
def evaluate_models_task(models_root: str, eval_path: str, metrics_path: str, cfg: EvaluateConfig,
                         checkpoints_dir: str, checkpoint_plot: str) -> dict[str, float]:
    """Held-out accuracy of every family model and RL checkpoint."""
    return evaluate_family(models_root, eval_path, metrics_path, cfg, checkpoints_dir,
                           checkpoint_plot, progress=True)
