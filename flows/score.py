"""Score stage: both models of every (base, tuned) pair, teacher-forced on both models' samples.

Run: `python -m flows.score` (what `dvc repro score` runs); reads the `score` and `models`
sections of params.yaml (and `runner` for where shards run), reads data/samples/, and writes
data/tokens/pair=<base>__<tuned>/generator=<base|tuned>/part-<shard>.parquet, the gate results
data/quality/tokens/<pair>_<generator>.json and data/metrics/score.json. One task per (pair,
generator, shard); a rerun keeps finished shards.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, unmapped

from rlvr.config import ModelsConfig, RunnerConfig, ScoreConfig, from_section, load_params
from tasks.runners import make_runner
from tasks.score import (
    finalize_tokens_task,
    gate_tokens_task,
    plan_scoring_task,
    score_shard_task,
)


@flow(name="score")
def score(
    cfg: ScoreConfig,
    models: ModelsConfig,
    samples_dir: str = "data/samples",
    out_dir: str = "data/tokens",
    quality_dir: str = "data/quality/tokens",
    metrics_path: str = "data/metrics/score.json",
) -> dict:
    """Score every (pair, generator, shard), gate each partition, then mark the table complete."""
    logger = get_run_logger()
    # plan: pairs x generators x samples shards; the vocabulary check runs in each shard
    plan = plan_scoring_task(cfg, models, samples_dir, out_dir)
    logger.info("scoring %d shard jobs over %d partitions", len(plan["jobs"]),
                len(plan["partitions"]))
    # score: one task and one part file per (pair, generator, shard)
    parts = score_shard_task.map(plan["jobs"], unmapped(cfg)).result()
    # gate: one Great Expectations validation per (pair, generator)
    gate_tokens_task.map(plan["partitions"], unmapped(plan["vocab_size"]),
                         unmapped(quality_dir)).result()
    # finalize: stale parts out, metrics, completion marker last
    metrics = finalize_tokens_task(parts, out_dir, metrics_path)
    logger.info("tokens: %s", metrics)
    return metrics


if __name__ == "__main__":
    params = load_params()
    runner = make_runner(from_section(RunnerConfig, params, "runner"))
    score.with_options(task_runner=runner)(
        from_section(ScoreConfig, params, "score"), from_section(ModelsConfig, params, "models"))
