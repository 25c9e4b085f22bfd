"""The sampler: per-row random streams, exact top-p, batch independence, KV-cache exactness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlvr.generation.sampler import SamplingParams, left_pad, pick_tokens, sample, sampling_uniforms
from rlvr.testbed.digits import make_split


def _prompts(tokenizer, n):
    _, eval_problems = make_split(50, n, seed=3, min_digits=2, max_digits=6)
    return [tokenizer(p.prompt)["input_ids"] for p in eval_problems]


def test_uniform_streams_depend_only_on_seed_and_key():
    a = sampling_uniforms(7, ["x", "y"], 5)
    b = sampling_uniforms(7, ["y"], 5)
    assert torch.equal(a[1], b[0])
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(sampling_uniforms(8, ["x"], 5)[0], a[0])


@pytest.mark.parametrize("top_p", [1.0, 0.7, 0.3])
def test_pick_tokens_matches_numpy_inverse_cdf(top_p):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 11, generator=gen) * 2
    u = torch.rand(64, generator=gen, dtype=torch.float64)
    got = pick_tokens(logits, u, temperature=0.8, top_p=top_p)
    for i in range(64):
        p = np.exp(logits[i].double().numpy() / 0.8)
        p /= p.sum()
        order = np.argsort(-p, kind="stable")
        sp = p[order]
        n_keep = int(np.searchsorted(np.cumsum(sp), top_p, side="left")) + 1  # smallest prefix >= p
        kept = sp[: min(n_keep, len(sp))]
        idx = int(np.searchsorted(np.cumsum(kept), u[i].item() * kept.sum(), side="right"))
        assert got[i].item() == order[min(idx, len(kept) - 1)]


def _reference_pick(probs: np.ndarray, u: float, top_p: float) -> int:
    """Inverse CDF over the whole row ranked by the tie rule (probability high to low, equal
    ones by lowest id: numpy's stable argsort), the nucleus the smallest prefix reaching
    top_p, u * its mass (the row's sum at top_p 1)."""
    order = np.argsort(-probs, kind="stable")
    cum = np.cumsum(probs[order])
    n_keep = len(cum) if top_p >= 1 else int(((cum - probs[order]) < top_p).sum())
    total = probs.sum() if top_p >= 1 else cum[n_keep - 1]
    idx = min(int(np.searchsorted(cum, u * total, side="right")), n_keep - 1)
    return int(order[idx])


@pytest.mark.parametrize("top_p", [1.0, 0.9, 0.3])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_pick_tokens_over_a_wide_vocabulary_ranks_like_a_full_sort(top_p, temperature):
    """Rows wider than the ranked candidates (1,000 ids): flat rows (the draw or the nucleus
    reach past the candidates: a full sort), peaked ones, ties straddling the candidates' edge,
    tied top tokens, -inf logits and uniforms near 0 and 1: every token is the reference's."""
    from rlvr.generation.sampler import CANDIDATES

    gen = torch.Generator().manual_seed(0)
    vocab = 1000
    rows = [torch.randn(vocab, generator=gen) * scale for scale in (0.1, 1.0, 4.0, 12.0)]
    edge = torch.randn(vocab, generator=gen)
    edge[torch.randperm(vocab, generator=gen)[: CANDIDATES - 10]] = 6.0  # 54 ids tied on top
    edge[torch.randperm(vocab, generator=gen)[:40]] = 3.0  # a tie straddling rank 64
    tied_top = torch.randn(vocab, generator=gen)
    tied_top[[700, 3, 512]] = 9.0
    ruled_out = torch.randn(vocab, generator=gen) * 3
    ruled_out[torch.randperm(vocab, generator=gen)[:900]] = float("-inf")
    rows += [edge, tied_top, ruled_out]
    logits = torch.stack(rows).repeat(40, 1)
    u = torch.rand(len(logits), generator=gen, dtype=torch.float64)
    u[:7], u[7:14] = 1e-12, 1 - 1e-12
    got = pick_tokens(logits, u, temperature, top_p)
    probs = torch.softmax(logits.double() / temperature, -1).numpy()
    want = [_reference_pick(probs[i], u[i].item(), top_p) for i in range(len(logits))]
    assert got.tolist() == want
    assert got[5].item() == 3  # u ~ 0 on tied top tokens 3, 512, 700: the lowest id
    assert len(set(got.tolist())) > 20  # not a degenerate test


def test_pick_tokens_empirical_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).repeat(20000, 1)
    u = torch.rand(20000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    counts = torch.bincount(pick_tokens(logits, u, 1.0, 1.0), minlength=4).double() / 20000
    expected = torch.softmax(logits[0].double(), -1)
    assert torch.allclose(counts, expected, atol=0.015)


def test_greedy_is_argmax():
    logits = torch.randn(5, 9)
    assert torch.equal(pick_tokens(logits, torch.zeros(5), 0.0, 1.0), logits.argmax(-1))


def test_left_pad_positions():
    ids, mask, pos = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos[1, -1].item() == 0 and pos[0].tolist() == [0, 1, 2]


def test_batched_equals_one_at_a_time(tiny_model, tokenizer):
    prompts = _prompts(tokenizer, 12)
    keys = [f"p{i}/0" for i in range(12)]
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=12, seed=5)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    batched = sample(tiny_model, prompts, keys, params, eos, pad, batch_size=5)
    for i in (0, 4, 11):
        alone = sample(tiny_model, prompts[i : i + 1], keys[i : i + 1], params, eos, pad)[0]
        assert alone.response_ids == batched[i].response_ids
        np.testing.assert_allclose(alone.logprobs, batched[i].logprobs, atol=1e-5)


def test_recorded_logprobs_match_a_full_forward(tiny_model, tokenizer):
    prompts = _prompts(tokenizer, 4)
    gens = sample(
        tiny_model,
        prompts,
        list("abcd"),
        SamplingParams(max_new_tokens=10, seed=2),
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    for g in gens:
        ids = torch.tensor([g.prompt_ids + g.response_ids])
        with torch.no_grad():
            logp = torch.log_softmax(tiny_model(ids).logits[0].float(), -1)
        n = len(g.prompt_ids)
        ref = (
            logp[n - 1 : n - 1 + len(g.response_ids)]
            .gather(-1, torch.tensor(g.response_ids).unsqueeze(-1))
            .squeeze(-1)
        )
        np.testing.assert_allclose(g.logprobs, ref.numpy(), atol=1e-5)
        assert g.finish_reason == (
            "eos" if g.response_ids[-1] == tokenizer.eos_token_id else "length"
        )


def test_prompts_sharing_a_prefix_sample_as_alone(tokenizer):
    """Distinct prompts that open alike (a chat's system prompt and demonstration) run their
    common prefix once: the prefix is found, and every response, with its recorded log-probs,
    is the one a batch of that prompt alone draws and a full forward scores."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr.generation.sampler import SHARED_PREFIX, common_prefix

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)).eval()
    g = torch.Generator().manual_seed(2)
    head = torch.randint(3, 300, (SHARED_PREFIX + 20,), generator=g).tolist()
    prompts = [head + torch.randint(3, 300, (n,), generator=g).tolist() for n in (5, 9, 1, 14)]
    prompts.append(head[:SHARED_PREFIX + 20])  # a prompt that is the others' prefix
    ids, mask, _ = left_pad(prompts, pad_id=0)
    assert common_prefix(ids, mask) == SHARED_PREFIX + 19  # each keeps one token of its own
    rows = [p for p in prompts for _ in range(3)]  # with repeats, as the sample stage has
    keys = [f"p{i}" for i in range(len(rows))]
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=15, seed=3)
    batched = sample(model, rows, keys, params, eos_id=1, pad_id=0)
    for i, gen in enumerate(batched):
        alone = sample(model, rows[i : i + 1], keys[i : i + 1], params, eos_id=1, pad_id=0)[0]
        assert alone.response_ids == gen.response_ids
        np.testing.assert_allclose(alone.logprobs, gen.logprobs, atol=1e-5)
        full = torch.tensor([gen.prompt_ids + gen.response_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(full).logits[0].float(), -1)
        n = len(gen.prompt_ids)
        ref = logp[n - 1 : -1].gather(-1, torch.tensor(gen.response_ids)[:, None]).squeeze(-1)
        np.testing.assert_allclose(gen.logprobs, ref.numpy(), atol=1e-5)
    assert len({tuple(g.response_ids) for g in batched}) > 5  # not a degenerate test
