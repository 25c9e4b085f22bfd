"""Sampling stage: graded samples rows, batching independence, resumable shards, checkpoints."""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from rlvr.generation.backends import BackendParams, BackendResources
from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import sample_rows, sample_shard
from rlvr.layout import Layout
from rlvr.models.loading import save_model
from rlvr.models.specs import ModelEntry, ModelsParams, ModelSpec, plan_models
from rlvr.store.tables import SAMPLES_SCHEMA
from rlvr.testbed.digits import grade, label_roles
from rlvr.testbed.prompts import task_prompts
from rlvr.tokens.scorer import ScoreParams, ScoreResources, score_shard

ENTRY = ModelEntry("base", "base", None, ModelSpec(name="base", path="in-memory"))
PARAMS = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=10, seed=3)


@pytest.fixture(scope="module")
def records():
    return task_prompts(n_eval=5, seed=0, min_digits=4, max_digits=6)


def test_rows_are_exact_and_graded(tiny_model, tokenizer, records) -> None:
    table = sample_rows(tiny_model, tokenizer, ENTRY, records, 3, PARAMS, grade)
    assert table.schema == SAMPLES_SCHEMA
    rows = table.to_pylist()
    assert len(rows) == 15 and len({(r["prompt_id"], r["sample_id"]) for r in rows}) == 15
    for r, rec in zip(rows, [rec for rec in records for _ in range(3)], strict=True):
        assert r["prompt_token_ids"] == tokenizer(rec.prompt)["input_ids"]
        assert r["prompt_token_ids"][0] == tokenizer.bos_token_id
        ends_eos = r["response_token_ids"][-1] == tokenizer.eos_token_id
        assert r["finish_reason"] == ("eos" if ends_eos else "length")
        assert ends_eos or r["n_tokens"] == PARAMS.max_new_tokens
        assert r["n_tokens"] == len(r["response_token_ids"]) == len(r["sampling_logprobs"])
        assert r["reward"] == grade(r["response_text"], rec.answer)
        assert max(r["sampling_logprobs"]) <= 0
        assert (r["temperature"], r["top_p"], r["seed"]) == (1.0, 1.0, 3)


def test_batching_does_not_change_samples(tiny_model, tokenizer, records) -> None:
    one = sample_rows(tiny_model, tokenizer, ENTRY, records, 2, PARAMS, grade, batch_size=1)
    many = sample_rows(tiny_model, tokenizer, ENTRY, records, 2, PARAMS, grade, batch_size=64)
    assert one.column("response_token_ids").to_pylist() == \
        many.column("response_token_ids").to_pylist()
    np.testing.assert_allclose(
        np.concatenate(one.column("sampling_logprobs").to_pylist()),
        np.concatenate(many.column("sampling_logprobs").to_pylist()), atol=1e-5)


def test_shards_resume_and_redo(tiny_pair, tokenizer, records, tmp_path) -> None:
    """A rerun keeps finished part files; changed inputs redo them; no duplicate rows."""
    layout = Layout(tmp_path / "data")
    for name, model in zip(["base", "rl"], tiny_pair, strict=True):
        save_model(model, tokenizer, layout.model_dir(name))
    save_model(tiny_pair[1], tokenizer, layout.model_dir("rl_step_7"))
    entries = plan_models(["base", "rl"], ModelsParams(), layout, checkpoints=True)
    assert [(e.name, e.kind, e.rl_step) for e in entries] == \
        [("base", "base", None), ("rl", "rl", None), ("rl_step_7", "checkpoint", 7)]
    base, rl = entries[:2]
    out = tmp_path / "samples" / "part-00000.parquet"
    first = sample_shard(rl, records, 2, PARAMS, "toy", BackendParams(), out)
    again = sample_shard(rl, records, 2, PARAMS, "toy", BackendParams(), out)
    assert not first["skipped"] and again["skipped"] and again["rows"] == first["rows"] == 10
    other = dataclasses.replace(PARAMS, seed=4)
    assert not sample_shard(rl, records, 2, other, "toy", BackendParams(), out)["skipped"]
    assert pq.read_table(out).num_rows == 10
    tokens = tmp_path / "tokens" / "part-00000.parquet"
    scored = score_shard(base, rl, "tuned", out, tokens, ScoreParams(), label_roles)
    assert not scored["skipped"]
    assert score_shard(base, rl, "tuned", out, tokens, ScoreParams(), label_roles)["skipped"]
    table = pq.read_table(tokens).to_pandas()
    assert len(table) == pq.read_table(out).to_pandas().n_tokens.sum()
    assert set(table.tuned_kind) == {"rl"} and table.rl_step.isna().all()


def test_shards_depend_on_content_not_mtimes_or_resources(tiny_pair, tokenizer, records,
                                                          tmp_path) -> None:
    """Touching every model file, copying the models elsewhere (a fresh clone + `dvc pull`) or
    changing a resources knob keeps every part, byte for byte; changed weights redo them."""
    layout = Layout(tmp_path / "a")
    for name, model in zip(["base", "rl"], tiny_pair, strict=True):
        save_model(model, tokenizer, layout.model_dir(name))
    base, rl = plan_models(["base", "rl"], ModelsParams(), layout)
    samples, tokens = tmp_path / "s.parquet", tmp_path / "t.parquet"
    sample_shard(rl, records, 2, PARAMS, "toy", BackendParams(), samples)
    score_shard(base, rl, "tuned", samples, tokens, ScoreParams(), label_roles)
    before = [samples.read_bytes(), tokens.read_bytes()]
    for f in layout.models_dir.rglob("*"):
        if f.is_file():
            os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**12))
    moved = Layout(tmp_path / "b")
    shutil.copytree(layout.models_dir, moved.models_dir)  # new paths, new mtimes, same bytes
    base2, rl2 = plan_models(["base", "rl"], ModelsParams(), moved)
    small = ScoreParams(resources=ScoreResources(vocab_chunk=64, block_entries=256,
                                                 time_chunk=4, batch_tokens=64))
    fast = BackendParams(resources=BackendResources(batch_size=3))
    for b, r in ((base, rl), (base2, rl2)):
        assert sample_shard(r, records, 2, PARAMS, "toy", fast, samples)["skipped"]
        assert score_shard(b, r, "tuned", samples, tokens, small, label_roles)["skipped"]
    assert [samples.read_bytes(), tokens.read_bytes()] == before
    save_model(tiny_pair[0], tokenizer, moved.model_dir("rl"))  # other weights under that name
    assert not sample_shard(rl2, records, 2, PARAMS, "toy", fast, samples)["skipped"]


def test_shard_bytes_do_not_depend_on_the_callers_thread_count(tiny_pair, tokenizer, records,
                                                               tmp_path) -> None:
    """Shards pin torch to one thread: a runner or machine with more cores writes the same
    bytes (log-probs differ in their last bits between 1 and 2 intra-op threads otherwise)."""
    layout = Layout(tmp_path / "data")
    for name, model in zip(["base", "rl"], tiny_pair, strict=True):
        save_model(model, tokenizer, layout.model_dir(name))
    base, rl = plan_models(["base", "rl"], ModelsParams(), layout)
    written = []
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            samples, tokens = tmp_path / f"s{threads}.parquet", tmp_path / f"t{threads}.parquet"
            sample_shard(rl, records, 2, PARAMS, "toy", BackendParams(), samples)
            torch.set_num_threads(threads)
            score_shard(base, rl, "tuned", samples, tokens, ScoreParams(), label_roles)
            written.append([samples.read_bytes(), tokens.read_bytes()])
    finally:
        torch.set_num_threads(before)
    assert written[0] == written[1]
