"""Pretrain stage: the base model, next-token training on the task corpus.

Run: `python -m flows.pretrain` (what `dvc repro pretrain` runs); reads params.yaml `task`,
`model` and `pretrain`, writes data/models/base and data/plots/pretrain_loss.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.testbed.model import ModelShape
from rlvr.testbed.split import TaskParams
from rlvr.training.lm import PretrainParams
from tasks.linking import run_stage
from tasks.pretrain import pretrain_base_task
from tasks.results import publish_results


@flow(name="pretrain")
def pretrain(task_cfg: TaskParams, shape: ModelShape, cfg: PretrainParams,
             data_root: str = DATA_ROOT) -> dict[str, float]:
    """Build and pretrain the base model."""
    logger = get_run_logger()
    # train and save the base model with its loss curve
    layout = Layout(data_root)
    summary = pretrain_base_task(layout, task_cfg, shape, cfg)
    logger.info("base: %(n_params)s params, final loss %(final_loss).4f, %(seconds).0f s", summary)
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    params = load_params()
    run_stage(pretrain, from_section(TaskParams, params, "task"),
              from_section(ModelShape, params, "model"),
              from_section(PretrainParams, params, "pretrain"))


if __name__ == "__main__":
    run_main(main)
