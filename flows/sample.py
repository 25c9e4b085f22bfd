"""Sample stage: n graded responses per eval prompt from every model of the study.

Run: `python -m flows.sample` (what `dvc repro sample` runs); reads the `sample`, `models` and
`backend` sections of params.yaml (and `runner` for where shards run), and writes
data/samples/model=<name>/part-<shard>.parquet, the gate results
data/quality/samples/<model>.json and data/metrics/sample.json. One task per (model, prompt
shard); a rerun keeps finished shards.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, unmapped

from rlvr.config import (
    BackendConfig,
    ModelsConfig,
    RunnerConfig,
    SampleConfig,
    from_section,
    load_params,
)
from tasks.runners import make_runner
from tasks.sample import (
    finalize_samples_task,
    gate_samples_task,
    plan_sampling_task,
    sample_shard_task,
)


@flow(name="sample")
def sample(
    cfg: SampleConfig,
    models: ModelsConfig,
    backend: BackendConfig,
    out_dir: str = "data/samples",
    quality_dir: str = "data/quality/samples",
    metrics_path: str = "data/metrics/sample.json",
) -> dict:
    """Sample every (model, shard), gate each model's rows, then mark the table complete."""
    logger = get_run_logger()
    # plan: models (named + RL checkpoints) x prompt shards
    plan = plan_sampling_task(cfg, models, out_dir)
    logger.info("sampling models %s: %d shard jobs", plan["models"], len(plan["shards"]))
    # sample: one task and one part file per (model, shard)
    parts = sample_shard_task.map(plan["entries"], plan["shards"], unmapped(cfg),
                                  unmapped(backend), unmapped(out_dir)).result()
    # gate: one Great Expectations validation per model
    gate_samples_task.map(plan["models"], unmapped(out_dir), unmapped(quality_dir)).result()
    # finalize: stale parts out, metrics, completion marker last
    metrics = finalize_samples_task(parts, out_dir, metrics_path)
    logger.info("samples: %s", metrics)
    return metrics


if __name__ == "__main__":
    params = load_params()
    runner = make_runner(from_section(RunnerConfig, params, "runner"))
    sample.with_options(task_runner=runner)(
        from_section(SampleConfig, params, "sample"), from_section(ModelsConfig, params, "models"),
        from_section(BackendConfig, params, "backend"))
