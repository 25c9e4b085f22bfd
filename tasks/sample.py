"""Prefect tasks of the sample stage: wrappers of rlvr.generation.samples and rlvr.store.gates."""

from __future__ import annotations

from prefect import get_run_logger, task

from rlvr.generation.backends import BackendParams
from rlvr.generation.samples import SampleParams, plan_samples, sample_shard, summarize_samples
from rlvr.layout import Layout
from rlvr.models.specs import ModelEntry, ModelsParams
from rlvr.store.atomic import keep_only, sweep_debris, write_json
from rlvr.store.gates import gate_samples_dir
from rlvr.store.tables import clear_complete, finalize_dataset, part_path, samples_dir
from rlvr.testbed.prompts import PromptRecord, n_shards, prompt_shard
from tasks.retry import TRANSIENT_RETRIES


@task
def plan_sampling_task(cfg: SampleParams, models: ModelsParams, layout: Layout) -> dict:
    """Check every input, then claim the outputs; one job per (model, prompt shard)."""
    plan = plan_samples(cfg, models, layout)
    if plan.dropped:
        get_run_logger().warning("dropped %d of %d prompts that do not fit a model "
                                 "(sample.unfit_prompts: drop)", plan.dropped,
                                 plan.dropped + len(plan.records))
    sweep_debris(*layout.outputs("sample"))
    keep_only(layout.quality_dir("samples"), {f"{e.name}.json" for e in plan.entries})
    clear_complete(layout.samples_dir)
    shards = range(n_shards(plan.records, cfg.shard_size))
    return {"models": [e.name for e in plan.entries],
            "entries": [e for e in plan.entries for _ in shards],
            "records": [prompt_shard(plan.records, s, cfg.shard_size)
                        for _ in plan.entries for s in shards],
            "shards": [s for _ in plan.entries for s in shards]}


@task(**TRANSIENT_RETRIES)
def sample_shard_task(
    entry: ModelEntry, shard: int, records: list[PromptRecord], cfg: SampleParams, grader: str,
    backend: BackendParams, layout: Layout,
) -> dict:
    """Sample one (model, prompt shard) into its own part file."""
    out = part_path(samples_dir(layout.samples_dir, entry.name), shard)
    return sample_shard(entry, records, cfg.n_per_prompt, cfg.sampling, grader, backend, out,
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
