"""Shared fixtures: an offline, isolated environment and a tiny real model built in the test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# machine facts for every test process: no hub, no telemetry, Prefect state in a temp dir
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="rlvr-prefect-")

import pytest  # noqa: E402

from rlvr.testbed.model import ModelShape, build_model, build_tokenizer  # noqa: E402

TINY = ModelShape(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_length=64)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    """A randomly initialised 2-layer Llama over the task vocabulary (weights are not trained)."""
    return build_model(TINY, tokenizer, seed=0).eval()


@pytest.fixture(scope="session")
def tiny_pair(tokenizer):
    """Two different random tiny models sharing the task tokenizer: a (base, tuned) stand-in."""
    return build_model(TINY, tokenizer, seed=0).eval(), build_model(TINY, tokenizer, seed=1).eval()


@pytest.fixture(scope="session")
def scored_data(tmp_path_factory, tiny_pair, tokenizer) -> Path:
    """data/ as the sample and score stages write it: 6 prompts x 3 responses of `base` in two
    shards, scored against `rl`, both tables complete."""
    from rlvr.generation.backends import BackendParams
    from rlvr.generation.sampler import SamplingParams
    from rlvr.generation.samples import sample_shard
    from rlvr.layout import Layout
    from rlvr.models.loading import save_model
    from rlvr.models.specs import ModelsParams, plan_models
    from rlvr.store.tables import finalize_dataset, part_path, samples_dir, tokens_dir
    from rlvr.testbed.digits import label_roles
    from rlvr.testbed.prompts import task_prompts
    from rlvr.tokens.scorer import ScoreParams, score_shard

    root = tmp_path_factory.mktemp("scored")
    layout = Layout(root / "data")
    for name, model in zip(("base", "rl"), tiny_pair, strict=True):
        save_model(model, tokenizer, layout.model_dir(name))
    base, rl = plan_models(["base", "rl"], ModelsParams(), layout)
    records = task_prompts(n_eval=6, seed=0, min_digits=3, max_digits=5)
    data, samples, tokens = layout.root, [], []
    for shard in (0, 1):
        samples.append(part_path(samples_dir(data / "samples", "base"), shard))
        sample_shard(base, records[3 * shard: 3 * shard + 3], 3,
                     SamplingParams(max_new_tokens=12, seed=0), "toy", BackendParams(),
                     samples[-1])
        tokens.append(part_path(tokens_dir(data / "tokens", "base__rl", "base"), shard))
        score_shard(base, rl, "base", samples[-1], tokens[-1], ScoreParams(), label_roles)
    finalize_dataset(data / "samples", samples)
    finalize_dataset(data / "tokens", tokens)
    return data
