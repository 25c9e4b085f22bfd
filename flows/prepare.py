"""Prepare stage: the deterministic train/eval split of the digit-sum task.

Run: `python -m flows.prepare` (what `dvc repro prepare` runs); reads params.yaml `task` and
writes data/task/train.parquet and data/task/eval.parquet.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.testbed.split import TaskParams
from tasks.linking import run_stage
from tasks.prepare import prepare_split_task
from tasks.results import publish_results


@flow(name="prepare")
def prepare(cfg: TaskParams, data_root: str = DATA_ROOT) -> dict[str, int]:
    """Draw the split and write it."""
    logger = get_run_logger()
    # split (a user eval file, if any, is checked against train)
    layout = Layout(data_root)
    summary = prepare_split_task(cfg, layout)
    logger.info("split: %(n_train)s train / %(n_eval)s eval prompts", summary)
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    run_stage(prepare, from_section(TaskParams, load_params(), "task"))


if __name__ == "__main__":
    run_main(main)
