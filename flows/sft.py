"""SFT stage: the family's controls from the same base (toy: `sft` on written solutions and
`rft` on the base's own correct samples; smollm2: `sft` on the worked solutions).

Run: `python -m flows.sft` (what `dvc repro sft` runs); reads params.yaml `sft`, `models` and
the family's `task`, writes data/models/<control> and data/plots/<control>_loss.csv for each.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from rlvr.config import run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.study import load_study
from rlvr.training.lm import SFTParams
from tasks.family import train_control_task
from tasks.linking import run_stage
from tasks.results import publish_results


@flow(name="sft")
def sft(family: str, controls: list[str], task: Any, cfg: SFTParams, models: ModelsParams,
        grader: str, data_root: str = DATA_ROOT) -> dict[str, dict[str, float]]:
    """Fine-tune the base into each control by next-token loss."""
    logger = get_run_logger()
    layout = Layout(data_root)
    summary = {}
    for name in controls:
        # one control: its data from the family, then response-only training
        summary[name] = train_control_task(family, layout, name, task, cfg, models, grader)
        logger.info("%s: %s", name, summary[name])
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    study = load_study()
    run_stage(sft, study.family.name, list(study.family.controls), study.task,
              study.section(SFTParams, "sft"), study.models, study.grader)


if __name__ == "__main__":
    run_main(main)
