"""Prefect tasks of the sample stage: wrappers of rlvr.generation.samples and rlvr.store.gates."""

from __future__ import annotations

from prefect import task

from rlvr.generation.backends import BackendParams
from rlvr.generation.samples import SampleParams, sample_shard, summarize_samples
from rlvr.layout import Layout
from rlvr.models.specs import ModelEntry, ModelsParams, plan_models
from rlvr.store.atomic import write_json
from rlvr.store.gates import gate_samples_dir
from rlvr.store.tables import clear_complete, finalize_dataset, part_path, samples_dir
from rlvr.testbed.prompts import load_prompts, n_shards, prompt_shard
from tasks.retry import TRANSIENT_RETRIES


@task
def plan_sampling_task(cfg: SampleParams, models: ModelsParams, layout: Layout) -> dict:
    """Models to sample (named + RL checkpoints), and one job per (model, prompt shard)."""
    entries = plan_models(cfg.models, models, layout, cfg.checkpoints)
    shards = range(n_shards(load_prompts(cfg.prompts, layout), cfg.shard_size))
    clear_complete(layout.samples_dir)
    return {"models": [e.name for e in entries],
            "entries": [e for e in entries for _ in shards],
            "shards": [s for _ in entries for s in shards]}


@task(**TRANSIENT_RETRIES)
def sample_shard_task(
    entry: ModelEntry, shard: int, cfg: SampleParams, backend: BackendParams, layout: Layout
) -> dict:
    """Sample one (model, prompt shard) into its own part file."""
    records = prompt_shard(load_prompts(cfg.prompts, layout), shard, cfg.shard_size)
    out = part_path(samples_dir(layout.samples_dir, entry.name), shard)
    return sample_shard(entry, records, cfg.n_per_prompt, cfg.sampling, cfg.grader, backend, out,
                        progress=True)


@task
def gate_samples_task(model: str, layout: Layout) -> dict:
    """Great Expectations gate on one model's samples."""
    return gate_samples_dir(samples_dir(layout.samples_dir, model),
                            layout.quality_dir("samples") / f"{model}.json")


@task
def finalize_samples_task(parts: list[dict], layout: Layout) -> dict:
    """Drop stale part files, write the metrics, mark the samples complete."""
    finalize_dataset(layout.samples_dir, [p["path"] for p in parts])
    metrics = summarize_samples(layout.samples_dir)
    write_json(metrics, layout.metrics("sample"))
    return metrics
