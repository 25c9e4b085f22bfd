"""Decisive stage: measured decisiveness of the pair's responses, and which signals find it.

Run: `python -m flows.decisive` (what `dvc repro decisive` runs); reads params.yaml `decisive`,
the family's grader (rollouts are graded like the samples) and `models`, reads data/samples/ and
data/tokens/, and writes data/decisive/positions/ (view
`decisiveness`), data/decisive/agg_decisive_*.parquet, data/plots/decisive_detection.csv and
data/metrics/decisive.json. A rerun keeps a generator's part file when nothing it depends on
changed.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, unmapped

from rlvr.config import run_main
from rlvr.decisive.positions import DecisiveParams, plan_decisive
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.study import load_study
from tasks.decisive import detection_task, measure_task, plan_decisive_task, publish_task
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.runners import RunnerParams, make_runner


@flow(name="decisive")
def decisive(cfg: DecisiveParams, grader: str, models: ModelsParams,
             data_root: str = DATA_ROOT) -> dict:
    """Measure each generator's responses, then compare the signals against the measurement."""
    logger = get_run_logger()
    layout = Layout(data_root)
    # plan: every input checked before an output is touched
    jobs = plan_decisive_task(cfg, grader, models, layout)
    # measure: the design's rollouts (decisive.design), one task and part file per generator
    runs = measure_task.map(jobs, unmapped(cfg), unmapped(grader)).result()
    publish_task(layout, runs, cfg)
    logger.info("decisiveness: %s", runs)
    # detect: pivotal shares, precision, recall and AUC with intervals (rlvr.decisive.estimates)
    metrics = detection_task(layout, cfg, runs)
    # results in the UI: headline numbers and links to the outputs
    publish_results(metrics, layout)
    return metrics


def main() -> None:
    study = load_study()
    cfg = study.section(DecisiveParams, "decisive", Layout())
    runner = make_runner(study.section(RunnerParams, "runner"), len(cfg.generators))
    run_stage(decisive.with_options(task_runner=runner), cfg, study.grader, study.models,
              preflight=lambda: plan_decisive(cfg, study.grader, study.models, Layout()))


if __name__ == "__main__":
    run_main(main)
