"""Prefect tasks of the score stage: wrappers of rlvr.tokens.scorer and rlvr.store.gates."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import task

from rlvr.config import ModelsConfig, ScoreConfig
from rlvr.models.specs import plan_models
from rlvr.store.atomic import write_json
from rlvr.store.gates import gate_tokens_dir
from rlvr.store.tables import clear_complete, finalize_dataset, pair_name, tokens_dir
from rlvr.testbed.digits import label_roles
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
def plan_scoring_task(cfg: ScoreConfig, models: ModelsConfig, samples_dir: str,
                      out_dir: str) -> dict:
    """Pairs (base with each tuned model and RL checkpoint) and one job per samples part."""
    clear_complete(out_dir)
    base = plan_models([cfg.base], models, None)[0]
    tuned = [e for e in plan_models(cfg.tuned, models, cfg.checkpoints_dir if cfg.checkpoints
                                    else None) if e.name != cfg.base]
    partitions = [(pair_name(base.name, t.name), g) for t in tuned for g in ("base", "tuned")]
    return {"jobs": plan_score_jobs(base, tuned, samples_dir, out_dir),
            "partitions": [str(tokens_dir(out_dir, p, g)) for p, g in partitions],
            "vocab_size": vocab_size_of(base)}


@task(**TRANSIENT_RETRIES)
def score_shard_task(job: ScoreJob, cfg: ScoreConfig) -> dict:
    """Score one (pair, generator, shard) into its own part file."""
    fields = {f.name for f in dataclasses.fields(ScoreParams)}
    params = ScoreParams(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in fields})
    return score_shard(job.base, job.tuned, job.generator, job.samples_part, job.out_path,
                       params, label_roles if cfg.label_roles else None)


@task
def gate_tokens_task(partition: str, vocab_size: int, quality_dir: str) -> dict:
    """Great Expectations gate on one (pair, generator) partition of the token table."""
    pair, generator = (part.split("=", 1)[1] for part in Path(partition).parts[-2:])
    return gate_tokens_dir(partition, vocab_size, f"{quality_dir}/{pair}_{generator}.json")


@task
def finalize_tokens_task(parts: list[dict], out_dir: str, metrics_path: str) -> dict:
    """Drop stale part files, write the metrics, mark the token table complete."""
    finalize_dataset(out_dir, [p["path"] for p in parts])
    metrics = summarize_tokens(out_dir)
    write_json(metrics, metrics_path)
    return metrics
