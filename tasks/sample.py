"""Prefect tasks of the sample stage: wrappers of rlvr.generation.samples and rlvr.store.gates."""

from __future__ import annotations

from prefect import task

from rlvr.config import BackendConfig, ModelsConfig, SampleConfig
from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import sample_shard, summarize_samples
from rlvr.models.specs import ModelEntry, plan_models
from rlvr.store.atomic import write_json
from rlvr.store.gates import gate_samples_dir
from rlvr.store.tables import clear_complete, finalize_dataset, part_path, samples_dir
from rlvr.testbed.graders import get_grader
from rlvr.testbed.prompts import load_prompt_file, n_shards, prompt_shard
from tasks.retry import TRANSIENT_RETRIES


@task
def plan_sampling_task(cfg: SampleConfig, models: ModelsConfig, out_dir: str) -> dict:
    """Models to sample (named + RL checkpoints), and one job per (model, prompt shard)."""
    clear_complete(out_dir)
    entries = plan_models(cfg.models, models, cfg.checkpoints_dir if cfg.checkpoints else None)
    shards = range(n_shards(load_prompt_file(cfg.prompts), cfg.shard_size))
    return {"models": [e.name for e in entries],
            "entries": [e for e in entries for _ in shards],
            "shards": [s for _ in entries for s in shards]}


@task(**TRANSIENT_RETRIES)
def sample_shard_task(
    entry: ModelEntry, shard: int, cfg: SampleConfig, backend: BackendConfig, out_dir: str
) -> dict:
    """Sample one (model, prompt shard) into its own part file."""
    records = prompt_shard(load_prompt_file(cfg.prompts), shard, cfg.shard_size)
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.seed)
    out = part_path(samples_dir(out_dir, entry.name), shard)
    return sample_shard(entry, records, cfg.n_per_prompt, params,
                        get_grader(cfg.grader, "sample.grader"), backend, out)


@task
def gate_samples_task(model: str, out_dir: str, quality_dir: str) -> dict:
    """Great Expectations gate on one model's samples."""
    return gate_samples_dir(samples_dir(out_dir, model), f"{quality_dir}/{model}.json")


@task
def finalize_samples_task(parts: list[dict], out_dir: str, metrics_path: str) -> dict:
    """Drop stale part files, write the metrics, mark the samples complete."""
    finalize_dataset(out_dir, [p["path"] for p in parts])
    metrics = summarize_samples(out_dir)
    write_json(metrics, metrics_path)
    return metrics
