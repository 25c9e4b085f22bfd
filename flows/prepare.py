"""Prepare stage: the family's prompts as the eval (and train) split.

Run: `python -m flows.prepare` (what `dvc repro prepare` runs); reads params.yaml `family` and
`task`, writes data/task/{eval,train}.parquet (prompt-file layout) and data/metrics/task.json.
The toy draws its digit-sum problems, smollm2 its a*b+c chat problems, a pair workspace checks
the user's prompt files (and that the grader and labeller fit them) and copies them.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from rlvr.config import run_main
from rlvr.families import check_task_files
from rlvr.layout import DATA_ROOT, Layout
from rlvr.study import load_study
from tasks.family import prepare_task
from tasks.linking import run_stage
from tasks.results import publish_results


@flow(name="prepare")
def prepare(family: str, task: Any, data_root: str = DATA_ROOT) -> dict[str, int]:
    """Write the split."""
    layout = Layout(data_root)
    # split: generated, or the user's files checked
    counts = prepare_task(family, layout, task)
    get_run_logger().info("split: %s", counts)
    # results in the UI: headline numbers and links to the outputs
    publish_results(counts, layout)
    return counts


def main() -> None:
    study = load_study()
    run_stage(prepare, study.family.name, study.task,
              preflight=lambda: check_task_files(study.task))


if __name__ == "__main__":
    run_main(main)
