"""Shared fixtures: an offline, isolated environment and a tiny real model built in the test."""

from __future__ import annotations

import os
import tempfile

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
