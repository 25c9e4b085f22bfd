"""Switch distributions: the exact blend against float64 numpy, the companion's top-K shortcut
against a hand computation, and what the decoder draws with them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlvr.cross.decoder import Mixing, SwitchRule, cross_sample
from rlvr.cross.mixing import (
    draw_probs,
    mix_logprobs,
    top_k_ids,
    top_k_mask,
    topk_kl_sym,
    topk_mix_logits,
)
from rlvr.generation.sampler import SamplingParams, pick_tokens, sample
from rlvr.testbed.digits import make_split


def _log_softmax64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = np.max(x, -1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _random_logits(rows=32, vocab=97, scale=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(rows, vocab, generator=g)).float()


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.5, 2.0])
def test_blend_matches_float64_reference(alpha):
    tuned, base = _random_logits(seed=1), _random_logits(seed=2)
    lp_t, lp_b = torch.log_softmax(tuned, -1), torch.log_softmax(base, -1)
    got = mix_logprobs(lp_t, lp_b, -alpha).numpy()  # primary tuned, weight -alpha on base
    ref = _log_softmax64((1 + alpha) * _log_softmax64(tuned.numpy())
                         - alpha * _log_softmax64(base.numpy()))
    # float32 log-softmax inputs against float64 ones: relative error ~1e-7 per log-prob
    np.testing.assert_allclose(np.exp(got), np.exp(ref), atol=2e-6 * (1 + alpha))
    np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, atol=1e-12)
    # the blend sharpens the tuned model away from the base: KL(blend‖base) > KL(tuned‖base)
    p_t = np.exp(_log_softmax64(tuned.numpy()))
    lb = _log_softmax64(base.numpy())
    kl_blend = (np.exp(got) * (got - lb)).sum(-1)
    kl_tuned = (p_t * (np.log(p_t) - lb)).sum(-1)
    assert np.all(kl_blend > kl_tuned)


def test_alpha_zero_is_the_tuned_model_exactly():
    tuned, base = _random_logits(seed=3), _random_logits(seed=4)
    base[:, :5] = -math.inf  # the base rules tokens out: irrelevant at weight 0
    lp_t, lp_b = torch.log_softmax(tuned, -1), torch.log_softmax(base, -1)
    got = mix_logprobs(lp_t, lp_b, -0.0)
    assert torch.equal(got, torch.log_softmax(lp_t.double(), -1))
    u = torch.rand(len(tuned), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.equal(pick_tokens(got, u, 1.0, 0.9), pick_tokens(tuned, u, 1.0, 0.9))
    # weight 1 is the other model, exactly, whatever the first rules out
    assert torch.equal(mix_logprobs(lp_b, lp_t, 1.0), torch.log_softmax(lp_t.double(), -1))


def test_blend_with_ruled_out_tokens():
    alpha = 0.1
    tuned, base = _random_logits(4, 12, seed=6), _random_logits(4, 12, seed=7)
    tuned[0, [1, 2]] = -math.inf  # row 0: the tuned model rules two tokens out
    base[1, [3, 4]] = -math.inf  # row 1: the base rules out two tokens the tuned model allows
    tuned[2, 5] = base[2, 5] = -math.inf  # row 2: both rule token 5 out
    base[3, 6] = -math.inf  # row 3: the base rules out a token the tuned model also rules out
    tuned[3, 6] = -math.inf
    lp_t, lp_b = torch.log_softmax(tuned, -1), torch.log_softmax(base, -1)
    p = mix_logprobs(lp_t, lp_b, -alpha).exp().numpy()
    assert not np.isnan(p).any()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
    assert p[0, 1] == p[0, 2] == 0.0 and p[2, 5] == 0.0 and p[3, 6] == 0.0
    for row in (0, 2, 3):  # finite elsewhere: the plain formula on the allowed tokens
        keep = np.isfinite(lp_t[row].numpy()) & np.isfinite(lp_b[row].numpy())
        logits = np.where(keep, (1 + alpha) * np.where(keep, lp_t[row].double().numpy(), 0)
                          - alpha * np.where(keep, lp_b[row].double().numpy(), 0), -np.inf)
        ref = np.exp(logits - logits.max())
        np.testing.assert_allclose(p[row], ref / ref.sum(), atol=1e-12)
    # row 1, the limit: a base log-prob of log(eps) on tokens 3, 4, computed in float64, tends
    # to all the mass on them, shared as tuned^(1 + alpha)
    lb = lp_b[1].double().numpy().copy()
    lb[[3, 4]] = np.log(1e-280)
    lt = lp_t[1].double().numpy()
    near = np.exp((1 + alpha) * lt - alpha * lb - ((1 + alpha) * lt - alpha * lb).max())
    near /= near.sum()
    np.testing.assert_allclose(p[1], near, atol=1e-20)  # the others' mass ~ eps^alpha
    assert p[1, 3] / p[1, 4] == pytest.approx(math.exp((1 + alpha) * (lt[3] - lt[4])))


def test_top_k_ids_tie_rule():
    logp = torch.tensor([[0.5, 2.0, 2.0, -1.0, 2.0], [3.0, 1.0, 1.0, 1.0, -math.inf]])
    assert top_k_ids(logp, 2).tolist() == [[1, 2], [0, 1]]  # equal values: lowest id first
    assert top_k_ids(logp, 3).tolist() == [[1, 2, 4], [0, 1, 2]]
    assert top_k_ids(logp, 9).tolist() == [[0, 1, 2, 3, 4]] * 2  # ids ascending
    mask, kth = top_k_mask(torch.tensor([[-math.inf, 0.0, -math.inf]]), 2)
    assert mask.tolist() == [[True, True, False]] and kth.item() == -math.inf


def test_top_k_mix_by_hand():
    # primary (main) and other model over 6 tokens, k = 3; values are log-probs
    lp_main = torch.log(torch.tensor([[0.40, 0.25, 0.15, 0.10, 0.06, 0.04]]))
    lp_other = torch.log(torch.tensor([[0.05, 0.30, 0.02, 0.35, 0.20, 0.08]]))
    # main's top 3: ids 0, 1, 2; other's top 3: ids 3, 1, 4 (lowest value 0.20)
    # aligned other values: id 0 -> pad 0.20, id 1 -> 0.30, id 2 -> pad 0.20
    replace = topk_mix_logits(lp_main, lp_other, 1.0, 3).exp()[0].numpy()
    np.testing.assert_allclose(replace, [0.20 / 0.70, 0.30 / 0.70, 0.20 / 0.70, 0, 0, 0],
                               atol=1e-7)
    # extrapolation, main = tuned: (1 + a) log main - a log other, renormalised on ids 0, 1, 2
    a = 0.1
    w = [0.40 ** (1 + a) / 0.20 ** a, 0.25 ** (1 + a) / 0.30 ** a, 0.15 ** (1 + a) / 0.20 ** a]
    got = topk_mix_logits(lp_main, lp_other, -a, 3).exp()[0].numpy()
    np.testing.assert_allclose(got[:3], np.array(w) / sum(w), atol=1e-7)
    assert (got[3:] == 0).all()
    # the companion's "js" gate: both renormalised on ids 0, 1, 2
    p = np.array([0.40, 0.25, 0.15]) / 0.80
    q = np.array([0.20, 0.30, 0.20]) / 0.70
    ref = 0.5 * ((p * np.log(p / q)).sum() + (q * np.log(q / p)).sum())
    assert topk_kl_sym(lp_main, lp_other, 3).item() == pytest.approx(ref, rel=1e-6)


def test_top_k_over_the_whole_vocabulary_is_exact():
    tuned, base = _random_logits(seed=8), _random_logits(seed=9)
    lp_t, lp_b = torch.log_softmax(tuned, -1), torch.log_softmax(base, -1)
    v = tuned.shape[-1]
    np.testing.assert_allclose(topk_mix_logits(lp_b, lp_t, 1.0, v).exp().numpy(),
                               lp_t.double().exp().numpy(), atol=1e-7)
    np.testing.assert_allclose(topk_mix_logits(lp_t, lp_b, -0.3, v).numpy(),
                               mix_logprobs(lp_t, lp_b, -0.3).numpy(), atol=1e-6)
    js_like = 0.5 * ((lp_t.exp() * (lp_t - lp_b)).sum(-1) + (lp_b.exp() * (lp_b - lp_t)).sum(-1))
    np.testing.assert_allclose(topk_kl_sym(lp_t, lp_b, v).numpy(), js_like.numpy(), atol=1e-5)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.8), (1.3, 0.5)])
def test_draw_probs_is_what_pick_tokens_samples(temperature, top_p):
    logits = _random_logits(3, 20, scale=2.0, seed=10)
    probs = draw_probs(logits, temperature, top_p).numpy()
    n = 20000  # a grid of uniforms: each token's share of it is its probability, +- 1/n
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    for row in range(3):
        toks = pick_tokens(logits[row].expand(n, -1), u, temperature, top_p).numpy()
        freq = np.bincount(toks, minlength=20) / n
        np.testing.assert_allclose(freq, probs[row], atol=2.0 / n)


def _prompts(tokenizer, n):
    _, eval_problems = make_split(50, n, seed=3, min_digits=2, max_digits=6)
    return [tokenizer(p.prompt)["input_ids"] for p in eval_problems]


PARAMS = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=20, seed=4)


def test_decoder_extrapolation_and_top_k(tiny_pair, tokenizer):
    tuned, base = tiny_pair
    prompts = _prompts(tokenizer, 6)
    keys = [f"x{i}" for i in range(6)]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    always = SwitchRule("js", -1.0)
    alone = [g.response_ids for g in sample(tuned, prompts, keys, PARAMS, eos, pad)]
    # alpha 0 at every position: the tuned model alone, token for token
    zero = cross_sample(tuned, base, prompts, keys, always, PARAMS, eos, pad,
                        mixing=Mixing(weight_intervention=-0.0))
    assert [g.response_ids for g in zero] == alone
    assert all(all(g.switched) for g in zero)
    # a large alpha changes responses; every token is drawn from the blend
    far = cross_sample(tuned, base, prompts, keys, always, PARAMS, eos, pad,
                       mixing=Mixing(weight_intervention=-2.0))
    assert [g.response_ids for g in far] != alone
    # top-K replacement over the whole vocabulary draws what exact replacement draws
    v = tuned.config.vocab_size
    exact = cross_sample(base, tuned, prompts, keys, always, PARAMS, eos, pad)
    whole = cross_sample(base, tuned, prompts, keys, always, PARAMS, eos, pad,
                         mixing=Mixing(top_k=v))
    assert [g.response_ids for g in whole] == [g.response_ids for g in exact]
    assert all(d is False for g in whole for d in g.mix_differs)
    assert max(tv for g in whole for tv in g.mix_tv) < 1e-6
    # top-3: the shortcut changes distributions at switched steps only, and says by how much
    mid = SwitchRule("js", float(np.median(np.concatenate([g.js for g in exact]))))
    short = cross_sample(base, tuned, prompts, keys, mid, PARAMS, eos, pad,
                         mixing=Mixing(top_k=3))
    for g in short:
        assert [tv is not None for tv in g.mix_tv] == g.switched
        assert all(0.0 <= tv <= 1.0 for tv in g.mix_tv if tv is not None)
    assert max(tv for g in short for tv in g.mix_tv if tv is not None) > 0.05
