"""Evaluate stage: held-out accuracy of every sampled model, from the samples table.

Run: `python -m flows.evaluate` (what `dvc repro evaluate` runs); reads params.yaml `family`
and data/samples/ (the responses the token tables score), writes data/metrics/models.json (per
model: accuracy with a 95% interval over prompts, the gain over the base paired by prompt,
pass@n, length, the family's response traits) and data/plots/rl_checkpoint_accuracy.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.study import load_study
from tasks.evaluate import evaluate_task
from tasks.linking import run_stage
from tasks.results import publish_results


@flow(name="evaluate")
def evaluate(family: str, data_root: str = DATA_ROOT) -> dict[str, float]:
    """Summarise the samples table per model."""
    layout = Layout(data_root)
    # accuracy, paired gain and traits per model
    accuracy = evaluate_task(family, layout)
    get_run_logger().info("held-out accuracy: %s", accuracy)
    # results in the UI: headline numbers and links to the outputs
    publish_results(accuracy, layout)
    return accuracy


def main() -> None:
    run_stage(evaluate, load_study().family.name)


if __name__ == "__main__":
    run_main(main)
