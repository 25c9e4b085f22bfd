"""Prefect tasks of the score stage: wrappers of rlvr.tokens.scorer and rlvr.store.gates."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams, plan_models, resolve
from rlvr.store.atomic import write_json
from rlvr.store.gates import gate_tokens_dir
from rlvr.store.tables import clear_complete, finalize_dataset, pair_name, tokens_dir
from rlvr.testbed.grammars import get_grammar
from rlvr.tokens.scorer import (
    ScoreJob,
    ScoreParams,
    plan_score_jobs,
    score_shard,
    summarize_tokens,
    vocab_size_of,
)
from tasks.retry import TRANSIENT_RETRIES


@task
def plan_scoring_task(cfg: ScoreParams, models: ModelsParams, layout: Layout) -> dict:
    """Pairs (base with each tuned model and RL checkpoint) and one job per samples part."""
    base = resolve(cfg.base, models, layout)
    tuned = [e for e in plan_models(cfg.tuned, models, layout, cfg.checkpoints)
             if e.name != cfg.base]
    partitions = [(pair_name(base.name, t.name), g) for t in tuned for g in ("base", "tuned")]
    jobs = plan_score_jobs(base, tuned, layout.samples_dir, layout.tokens_dir)
    vocab = vocab_size_of(base)
    clear_complete(layout.tokens_dir)
    return {"jobs": jobs, "vocab_size": vocab,
            "partitions": [str(tokens_dir(layout.tokens_dir, p, g)) for p, g in partitions]}


@task(**TRANSIENT_RETRIES)
def score_shard_task(job: ScoreJob, cfg: ScoreParams, testbed: str) -> dict:
    """Score one (pair, generator, shard) into its own part file."""
    return score_shard(job.base, job.tuned, job.generator, job.samples_part, job.out_path, cfg,
                       get_grammar(testbed).label_roles if cfg.label_roles else None)


@task
def gate_tokens_task(partition: str, vocab_size: int, layout: Layout) -> dict:
    """Great Expectations gate on one (pair, generator) partition of the token table."""
    pair, generator = (part.split("=", 1)[1] for part in Path(partition).parts[-2:])
    return gate_tokens_dir(partition, vocab_size,
                           layout.quality_dir("tokens") / f"{pair}_{generator}.json")


@task
def finalize_tokens_task(parts: list[dict], layout: Layout) -> dict:
    """Drop stale part files, write the metrics, mark the token table complete."""
    finalize_dataset(layout.tokens_dir, [p["path"] for p in parts])
    metrics = summarize_tokens(layout.tokens_dir)
    write_json(metrics, layout.metrics("score"))
    return metrics
