"""Prepare stage: the deterministic train/eval split of the digit-sum task.

Run: `python -m flows.prepare` (what `dvc repro prepare` runs); reads the `task` section of
params.yaml and writes data/task/train.parquet and data/task/eval.parquet.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import TaskConfig, from_section, load_params
from tasks.prepare import prepare_split_task


@flow(name="prepare")
def prepare(task_cfg: TaskConfig, out_dir: str = "data/task") -> dict[str, int]:
    """Draw the split and write it under `out_dir`."""
    logger = get_run_logger()
    # split (a user eval file, if any, is checked against train)
    summary = prepare_split_task(task_cfg, out_dir)
    logger.info("split: %(n_train)s train / %(n_eval)s eval prompts", summary)
    return summary


if __name__ == "__main__":
    prepare(from_section(TaskConfig, load_params(), "task"))
