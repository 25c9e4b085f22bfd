"""Prepare stage of the smollm2 family: the a*b+c problems, split, and their chat prompts.

Run from real/: `python -m flows.smollm2.prepare`; reads params.yaml `task`, writes
data/task/{demo,train,eval}.parquet (prompt-file layout with `context` turns) and
data/metrics/task.json.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.smollm2.task import ArithmeticParams
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.smollm2.prepare import prepare_task_task


@flow(name="prepare")
def prepare(cfg: ArithmeticParams, data_root: str = DATA_ROOT) -> dict:
    """Generate and split the problems."""
    # split: demonstrations, held-out eval, train (seed-stable order)
    layout = Layout(data_root)
    counts = prepare_task_task(layout, cfg)
    get_run_logger().info("split: %s", counts)
    # results in the UI: headline numbers and links to the outputs
    publish_results(counts, layout)
    return counts


def main() -> None:
    run_stage(prepare, from_section(ArithmeticParams, load_params(), "task"))


if __name__ == "__main__":
    run_main(main)
