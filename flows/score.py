"""Score stage: both models of every (base, tuned) pair, teacher-forced on both models' samples.

Run: `python -m flows.score` (what `dvc repro score` runs); reads params.yaml `score`, `models`,
the family's `task` (its labeller names token roles) and `runner` for where shards run; reads
data/samples/, and writes
data/tokens/pair=<base>__<tuned>/generator=<base|tuned>/part-<shard>.parquet, the gate results
data/quality/tokens/<pair>_<generator>.json and data/metrics/score.json. One task per (pair,
generator, shard); a rerun keeps finished shards.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, unmapped

from rlvr.config import run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.study import load_study
from rlvr.tokens.jobs import plan_scoring
from rlvr.tokens.scorer import ScoreParams
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.runners import RunnerParams, make_runner
from tasks.score import (
    finalize_tokens_task,
    gate_tokens_task,
    plan_scoring_task,
    score_shard_task,
)


@flow(name="score")
def score(cfg: ScoreParams, models: ModelsParams, family: str, task: Any,
          data_root: str = DATA_ROOT) -> dict:
    """Score every (pair, generator, shard), gate each partition, then mark the table complete."""
    logger = get_run_logger()
    layout = Layout(data_root)
    # plan: every input checked, then pairs x generators x samples shards
    plan = plan_scoring_task(cfg, models, layout)
    logger.info("scoring %d shard jobs over %d partitions", len(plan["jobs"]),
                len(plan["partitions"]))
    # score: one task and one part file per (pair, generator, shard)
    parts = score_shard_task.map(plan["jobs"], unmapped(cfg), unmapped(family),
                                 unmapped(task)).result()
    # gate: one Great Expectations validation per (pair, generator), then rows recomputed
    # from the models in float64 (the audit)
    gate_tokens_task.map(plan["partitions"], unmapped(plan["vocab_size"]),
                         unmapped(layout), unmapped(cfg.audit)).result()
    # finalize: stale parts out, metrics, completion marker last
    metrics = finalize_tokens_task(parts, layout)
    logger.info("tokens: %s", metrics)
    # results in the UI: headline numbers and links to the outputs
    publish_results(metrics, layout)
    return metrics


def main() -> None:
    study = load_study()
    cfg = study.section(ScoreParams, "score", Layout())
    runner = make_runner(study.section(RunnerParams, "runner"))
    run_stage(score.with_options(task_runner=runner), cfg, study.models, study.family.name,
              study.task, preflight=lambda: plan_scoring(cfg, study.models, Layout()))


if __name__ == "__main__":
    run_main(main)
