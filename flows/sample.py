"""Sample stage: n graded responses per eval prompt from every model of the study.

Run: `python -m flows.sample` (what `dvc repro sample` runs); reads params.yaml `sample`,
`models`, `backend` and the family's grader (and `runner` for where shards run), asks the
family's eval split (data/task/eval.parquet), and writes
data/samples/model=<name>/part-<shard>.parquet, the gate results
data/quality/samples/<model>.json and data/metrics/sample.json. One task per (model, prompt
shard); a rerun keeps finished shards.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, unmapped

from rlvr.config import run_main
from rlvr.generation.backends import BackendParams
from rlvr.generation.samples import SampleParams, plan_samples
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.study import load_study
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.runners import RunnerParams, make_runner
from tasks.sample import (
    finalize_samples_task,
    gate_samples_task,
    plan_sampling_task,
    sample_shard_task,
)


@flow(name="sample")
def sample(cfg: SampleParams, models: ModelsParams, backend: BackendParams, grader: str,
           data_root: str = DATA_ROOT) -> dict:
    """Sample every (model, shard), gate each model's rows, then mark the table complete."""
    logger = get_run_logger()
    layout = Layout(data_root)
    # plan: every input checked, then models (named + RL checkpoints) x prompt shards
    plan = plan_sampling_task(cfg, models, layout)
    logger.info("sampling models %s: %d shard jobs", plan["models"], len(plan["shards"]))
    # sample: one task and one part file per (model, shard)
    parts = sample_shard_task.map(plan["entries"], plan["shards"], plan["records"],
                                  unmapped(cfg), unmapped(grader), unmapped(backend),
                                  unmapped(layout)).result()
    # gate: one Great Expectations validation per model
    gate_samples_task.map(plan["models"], unmapped(layout)).result()
    # finalize: stale parts out, metrics, completion marker last
    metrics = finalize_samples_task(parts, layout)
    logger.info("samples: %s", metrics)
    # results in the UI: headline numbers and links to the outputs
    publish_results(metrics, layout)
    return metrics


def main() -> None:
    study = load_study()
    cfg = study.section(SampleParams, "sample", Layout())
    runner = make_runner(study.section(RunnerParams, "runner"))
    run_stage(sample.with_options(task_runner=runner), cfg, study.models,
              study.section(BackendParams, "backend"), study.grader,
              preflight=lambda: plan_samples(cfg, study.models, Layout()))


if __name__ == "__main__":
    run_main(main)
