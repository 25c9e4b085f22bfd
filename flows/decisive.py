"""Decisive stage: measured decisiveness of the pair's responses, and which signals find it.

Run: `python -m flows.decisive` (what `dvc repro decisive` runs); reads params.yaml `decisive`,
`sample.grader` (rollouts are graded like the samples) and `models`, reads data/samples/ and
data/tokens/, and writes data/decisive/positions/ (view
`decisiveness`), data/decisive/agg_decisive_*.parquet, data/plots/decisive_detection.csv and
data/metrics/decisive.json. A rerun keeps a generator's part file when nothing it depends on
changed.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.decisive.positions import DecisiveParams, plan_decisive
from rlvr.generation.samples import SampleParams
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from tasks.decisive import detection_task, measure_task, plan_decisive_task, publish_task
from tasks.linking import run_stage
from tasks.results import publish_results


@flow(name="decisive")
def decisive(cfg: DecisiveParams, grader: str, models: ModelsParams,
             data_root: str = DATA_ROOT) -> dict:
    """Measure each generator's responses, then compare the signals against the measurement."""
    logger = get_run_logger()
    layout = Layout(data_root)
    # plan: every input checked before an output is touched
    jobs = plan_decisive_task(cfg, grader, models, layout)
    # measure: K rollouts per position, one part file per generator
    runs = [measure_task(job, cfg, grader) for job in jobs]
    publish_task(layout, runs, cfg)
    logger.info("decisiveness: %s", runs)
    # detect: precision, recall and AUC of js, base entropy and |delta| (sql/decisive)
    metrics = detection_task(layout, cfg, runs)
    # results in the UI: headline numbers and links to the outputs
    publish_results(metrics, layout)
    return metrics


def main() -> None:
    params = load_params()
    cfg = from_section(DecisiveParams, params, "decisive")
    grader = from_section(SampleParams, params, "sample").grader
    models = from_section(ModelsParams, params, "models")
    run_stage(decisive, cfg, grader, models,
              preflight=lambda: plan_decisive(cfg, grader, models, Layout()))


if __name__ == "__main__":
    run_main(main)
