"""Prefect tasks of the score stage: wrappers of rlvr.tokens.{jobs,scorer} and rlvr.store.gates."""

from __future__ import annotations

from typing import Any

from prefect import task

from rlvr.families import get_family
from rlvr.layout import Layout
from rlvr.models.loading import load_tokenizer
from rlvr.models.specs import ModelsParams
from rlvr.store.atomic import keep_only, sweep_debris, write_json
from rlvr.store.gates import gate_tokens_dir
from rlvr.store.tables import clear_complete, finalize_dataset
from rlvr.tokens.audit import audit_partition
from rlvr.tokens.jobs import Partition, ScoreJob, plan_scoring, summarize_tokens
from rlvr.tokens.scorer import AuditParams, ScoreParams, score_shard
from tasks.retry import TRANSIENT_RETRIES


@task
def plan_scoring_task(cfg: ScoreParams, models: ModelsParams, layout: Layout) -> dict:
    """Check every input, then claim the outputs; one job per samples part of each pair."""
    plan = plan_scoring(cfg, models, layout)
    sweep_debris(*layout.outputs("score"))
    keep_only(layout.quality_dir("tokens"), {f"{p.name}{suffix}.json" for p in plan.partitions
                                             for suffix in ("", ".audit")})
    clear_complete(layout.tokens_dir)
    return {"jobs": plan.jobs, "vocab_size": plan.vocab_size, "partitions": plan.partitions}


@task(**TRANSIENT_RETRIES)
def score_shard_task(job: ScoreJob, cfg: ScoreParams, family: str, task_cfg: Any) -> dict:
    """Score one (pair, generator, shard) into its own part file, roles by the family's
    labeller."""
    return score_shard(job.base, job.tuned, job.generator, job.samples_part, job.out_path, cfg,
                       get_family(family).labeller(task_cfg), progress=True)


@task
def gate_tokens_task(partition: Partition, vocab_size: int, layout: Layout,
                     audit: AuditParams) -> dict:
    """Great Expectations gate on one (pair, generator) partition of the token table, then
    the float64 audit of a sample of its rows against both models."""
    quality = layout.quality_dir("tokens")
    summary = gate_tokens_dir(partition.directory, vocab_size, quality / f"{partition.name}.json",
                              samples_dir=partition.samples,
                              tokenizer=load_tokenizer(partition.spec))
    summary["audit"] = audit_partition(partition.directory, partition.samples, partition.spec,
                                       partition.tuned, audit, f"tokens_{partition.name}",
                                       quality / f"{partition.name}.audit.json")
    return summary


@task
def finalize_tokens_task(parts: list[dict], layout: Layout) -> dict:
    """Drop stale part files, write the metrics, mark the token table complete."""
    finalize_dataset(layout.tokens_dir, [p["path"] for p in parts])
    metrics = summarize_tokens(layout.tokens_dir)
    write_json(metrics, layout.metrics("score"))
    return metrics
