"""Cross-model scoring on tiny real models: alignment, chunking, self-JS, sampler agreement."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax
from scipy.stats import entropy

from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import sample_rows
from rlvr.models.loading import check_head, check_same_vocab
from rlvr.models.specs import ModelEntry, ModelSpec
from rlvr.store.tables import TOKENS_SCHEMA
from rlvr.testbed.digits import grade, label_roles
from rlvr.testbed.model import build_tokenizer
from rlvr.testbed.prompts import task_prompts
from rlvr.tokens.scorer import Response, ScoreParams, ScoreResources, score_responses

# 112 ids in 3 uneven chunks, time chunks shorter than most sequences, small nuclei
SMALL = ScoreParams(resources=ScoreResources(vocab_chunk=48, block_entries=16 * 48, time_chunk=8,
                                             batch_tokens=64, top_p_candidates=8))

ENTRY = ModelEntry("base", "base", None, ModelSpec(name="base", path="in-memory"))


def _responses(seed: int = 0, n: int = 6) -> list[Response]:
    """Random prompts and responses of different lengths (some longer than a time chunk)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        prompt = [1] + rng.integers(4, 112, rng.integers(1, 9)).tolist()
        response = rng.integers(4, 112, rng.integers(1, 14)).tolist() + [2]
        out.append(Response(f"p{i}", i % 2, prompt, response, int(i % 2)))
    return out


def _score(base, tuned, responses, params=SMALL, labeller=None):
    tables = score_responses(base, tuned, build_tokenizer(), responses, "base__rl", "tuned",
                             params, labeller)
    return pa_concat(list(tables)).to_pandas()


def pa_concat(tables):
    import pyarrow as pa

    return pa.concat_tables(tables)


def test_positions_align_with_unpadded_full_forward(tiny_pair) -> None:
    base, tuned = tiny_pair
    responses = _responses()
    df = _score(base, tuned, responses)
    assert len(df) == sum(len(r.response_ids) for r in responses)
    for i, r in enumerate(responses):
        rows = df[df.prompt_id == f"p{i}"].sort_values("position")
        ids = torch.tensor([r.prompt_ids + r.response_ids])
        with torch.no_grad():
            la = log_softmax(base(input_ids=ids).logits[0].double().numpy(), -1)
            lb = log_softmax(tuned(input_ids=ids).logits[0].double().numpy(), -1)
        cols = np.arange(len(r.prompt_ids) - 1, ids.shape[1] - 1)  # columns predicting responses
        tok = np.asarray(r.response_ids)
        assert rows.position.tolist() == list(range(len(tok)))
        assert (rows.token_id.to_numpy() == tok).all() and (rows.n_tokens == len(tok)).all()
        np.testing.assert_allclose(rows.logprob_base, la[cols, tok], atol=2e-5)
        np.testing.assert_allclose(rows.logprob_tuned, lb[cols, tok], atol=2e-5)
        np.testing.assert_allclose(rows.entropy_base, entropy(np.exp(la[cols]), axis=-1), atol=2e-5)
        js_ref = jensenshannon(np.exp(la[cols]), np.exp(lb[cols]), axis=-1) ** 2
        np.testing.assert_allclose(rows.js, js_ref, atol=2e-6)
        rank = 1 + (la[cols] > la[cols, tok][:, None]).sum(-1)
        assert (rows.rank_base.to_numpy() == rank).all()
        assert (rows.top1_tuned.to_numpy() == lb[cols].argmax(-1)).all()


def test_chunk_sizes_do_not_change_results(tiny_pair) -> None:
    base, tuned = tiny_pair
    small = _score(base, tuned, _responses(1))
    big = _score(base, tuned, _responses(1), ScoreParams())
    _assert_same_rows(small, big, atol=1e-5)


def test_kv_bytes_bounds_the_batch_not_the_rows(tiny_pair) -> None:
    """A KV budget of a few tokens' caches packs fewer responses per batch; rows stay the same."""
    base, tuned = tiny_pair
    per_token = sum(2 * m.config.num_hidden_layers * m.config.num_key_value_heads
                    * m.config.head_dim * 4 for m in (base, tuned))  # fp32 keys and values
    tight = ScoreResources(batch_tokens=4096, kv_bytes=40 * per_token)
    assert tight.tokens_per_batch((base, tuned)) == 40
    assert ScoreResources(batch_tokens=64).tokens_per_batch((base, tuned)) == 64
    big = _score(base, tuned, _responses(1), ScoreParams())
    _assert_same_rows(_score(base, tuned, _responses(1), ScoreParams(resources=tight)), big,
                      atol=1e-5)


def _assert_same_rows(x, y, atol: float) -> None:
    """Same token rows: equal keys and integer/string columns, floats within `atol`."""
    keys = ["prompt_id", "sample_id", "position"]
    x, y = x.sort_values(keys), y.sort_values(keys)
    for col in TOKENS_SCHEMA.names:
        if x[col].dtype.kind == "f":
            np.testing.assert_allclose(x[col], y[col], atol=atol, err_msg=col)
        else:
            assert x[col].tolist() == y[col].tolist(), col


def test_shared_prompts_match_scoring_each_response_alone(tiny_pair) -> None:
    """Responses to one prompt share its encoding (and may be split across batches): every
    column equals scoring each response on its own."""
    base, tuned = tiny_pair
    rng = np.random.default_rng(4)
    prompts = [[1] + rng.integers(4, 112, k).tolist() for k in (2, 6, 9)]
    responses = [Response(f"p{j}", i, prompts[j], rng.integers(4, 112, rng.integers(1, 12)).tolist()
                          + [2], i % 2) for j in range(3) for i in range(4)]
    shared = _score(base, tuned, responses)
    alone = pa_concat([pa_concat(list(score_responses(base, tuned, build_tokenizer(), [r],
                                                      "base__rl", "tuned", SMALL)))
                       for r in responses]).to_pandas()
    _assert_same_rows(shared, alone, atol=2e-6)


def test_model_against_itself_has_zero_divergence(tiny_model) -> None:
    df = _score(tiny_model, tiny_model, _responses(2))
    assert df.js.max() <= 1e-6 and df.js_top_p.max() <= 1e-6
    assert df.delta_logprob.abs().max() == 0.0


def test_scorer_agrees_with_sampler_and_labels_roles(tiny_pair, tokenizer) -> None:
    base, tuned = tiny_pair
    records = task_prompts(n_eval=4, seed=0, min_digits=4, max_digits=7)
    samples = sample_rows(base, tokenizer, ENTRY, records, 3,
                          SamplingParams(max_new_tokens=12, seed=1), grade).to_pylist()
    responses = [Response(s["prompt_id"], s["sample_id"], s["prompt_token_ids"],
                          s["response_token_ids"], s["reward"]) for s in samples]
    df = _score(base, tuned, responses, ScoreParams(), labeller=label_roles)
    df = df.sort_values(["prompt_id", "sample_id", "position"])
    order = sorted(range(len(samples)), key=lambda i: (samples[i]["prompt_id"], i))
    sampled = np.concatenate([samples[i]["sampling_logprobs"] for i in order])
    np.testing.assert_allclose(df.logprob_base.to_numpy(), sampled, atol=1e-5)
    first = df[(df.prompt_id == samples[0]["prompt_id"]) & (df.sample_id == 0)]
    assert first.role.tolist() == label_roles(first.token_text.tolist())


def test_vocab_mismatch_names_paths_and_entry(tokenizer) -> None:
    other = build_tokenizer()
    other.add_tokens(["extra"])
    check_same_vocab(tokenizer, build_tokenizer(), "/m/base", "/m/rl")
    expected = r"/m/base and /m/rl differ first at id 113: None vs 'extra'"
    with pytest.raises(ValueError, match=expected):
        check_same_vocab(tokenizer, other, "/m/base", "/m/rl")


def test_check_head_accepts_plain_models_in_every_dtype(tiny_model) -> None:
    check_head(tiny_model, "tiny")
    for dtype in (torch.bfloat16, torch.float16):  # their own head rounds; the scorer's does not
        check_head(copy.deepcopy(tiny_model).to(dtype), "tiny")


def test_check_head_rejects_non_finite_and_post_processed_logits(tiny_model) -> None:
    broken = copy.deepcopy(tiny_model)
    with torch.no_grad():
        broken.model.norm.weight[0] = float("nan")
    with pytest.raises(ValueError, match="model at m: its logits are not finite"):
        check_head(broken, "m")
    capped = copy.deepcopy(tiny_model)
    plain = type(capped).forward

    def soft_capped(self, *args, **kwargs):  # what Gemma-2-style soft-capping does to logits
        out = plain(self, *args, **kwargs)
        out.logits = 0.5 * torch.tanh(out.logits / 0.5)
        return out

    capped.forward = soft_capped.__get__(capped)
    with pytest.raises(ValueError, match="not its output head applied to the last hidden state"):
        check_head(capped, "m")
