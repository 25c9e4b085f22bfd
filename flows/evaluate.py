"""Evaluate stage: held-out accuracy of every family model (n samples per prompt, temperature 1).

Run: `python -m flows.evaluate` (what `dvc repro evaluate` runs); reads the `evaluate` section
of params.yaml, writes data/metrics/models.json and data/plots/rl_checkpoint_accuracy.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import EvaluateConfig, from_section, load_params
from tasks.evaluate import evaluate_models_task


@flow(name="evaluate")
def evaluate(
    cfg: EvaluateConfig,
    models_root: str = "data/models",
    eval_path: str = "data/task/eval.parquet",
    metrics_path: str = "data/metrics/models.json",
    checkpoints_dir: str = "data/models/rl_steps",
    checkpoint_plot: str = "data/plots/rl_checkpoint_accuracy.csv",
) -> dict[str, float]:
    """Sample, grade and summarise each model."""
    logger = get_run_logger()
    # accuracy per model and per RL checkpoint
    accuracy = evaluate_models_task(models_root, eval_path, metrics_path, cfg, checkpoints_dir,
                                    checkpoint_plot)
    for name, value in accuracy.items():
        logger.info("%s: accuracy %.3f", name, value)
    return accuracy


if __name__ == "__main__":
    evaluate(from_section(EvaluateConfig, load_params(), "evaluate"))
