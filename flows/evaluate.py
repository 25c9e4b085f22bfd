"""Evaluate stage: held-out accuracy of every family model (n samples per prompt, temperature 1).

Run: `python -m flows.evaluate` (what `dvc repro evaluate` runs); reads params.yaml `evaluate`
and `models`, writes data/metrics/models.json and data/plots/rl_checkpoint_accuracy.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.training.evaluation import EvaluateParams
from tasks.evaluate import evaluate_models_task
from tasks.linking import run_stage
from tasks.results import publish_results


@flow(name="evaluate")
def evaluate(cfg: EvaluateParams, models: ModelsParams,
             data_root: str = DATA_ROOT) -> dict[str, float]:
    """Sample, grade and summarise each model."""
    logger = get_run_logger()
    # accuracy per model and per RL checkpoint
    layout = Layout(data_root)
    accuracy = evaluate_models_task(layout, cfg, models)
    for name, value in accuracy.items():
        logger.info("%s: accuracy %.3f", name, value)
    # results in the UI: headline numbers and links to the outputs
    publish_results(accuracy, layout)
    return accuracy


def main() -> None:
    params = load_params()
    run_stage(evaluate, from_section(EvaluateParams, params, "evaluate"),
              from_section(ModelsParams, params, "models"))


if __name__ == "__main__":
    run_main(main)
