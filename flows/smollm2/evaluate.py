"""Evaluate stage of the smollm2 family: held-out accuracy with CIs, from the samples table.

Run from real/: `python -m flows.smollm2.evaluate`; reads data/samples (the sample stage's
graded responses to the held-out prompts), writes data/metrics/models.json (accuracy, 95%
interval over prompts, and what the responses did: format, the two steps, length, truncation)
and data/plots/rl_checkpoint_accuracy.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import run_main
from rlvr.layout import DATA_ROOT, Layout
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.smollm2.evaluate import evaluate_family_task


@flow(name="evaluate")
def evaluate(data_root: str = DATA_ROOT) -> dict:
    """Summarise every sampled model."""
    # grade summary per model, checkpoint curve
    layout = Layout(data_root)
    accuracies = evaluate_family_task(layout)
    get_run_logger().info("accuracy: %s", accuracies)
    # results in the UI: headline numbers and links to the outputs
    publish_results(accuracies, layout)
    return accuracies


def main() -> None:
    run_stage(evaluate)


if __name__ == "__main__":
    run_main(main)
