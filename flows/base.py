"""Base stage: the family's base model (the toy pretrains one, smollm2 converts the pinned GGUF).

Run: `python -m flows.base` (what `dvc repro base` runs); reads params.yaml `family`, `task` and
the family's base sections (toy: `model`, `pretrain`; smollm2: `convert`), writes
data/models/base and the family's base log (toy: data/plots/pretrain_loss.csv; smollm2:
data/metrics/convert.json). A pair workspace has no base stage: its base is given.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from rlvr.config import run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.study import load_study
from tasks.family import build_base_task
from tasks.linking import run_stage
from tasks.results import publish_results


@flow(name="base")
def base(family: str, task: Any, sections: dict[str, Any], data_root: str = DATA_ROOT) -> dict:
    """Build the base model."""
    layout = Layout(data_root)
    # pretrain or convert, then save it with its log
    summary = build_base_task(family, layout, task, sections)
    get_run_logger().info("base: %s", summary)
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    study = load_study()
    run_stage(base, study.family.name, study.task,
              {name: study.section(cls, name) for name, cls in study.family.base_sections.items()})


if __name__ == "__main__":
    run_main(main)
