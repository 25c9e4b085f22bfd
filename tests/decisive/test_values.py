"""Measured decisiveness against exact values: a bigram (Markov) generator whose success
probability from any prefix is a small dynamic program, and rollouts decoded one by one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from rlvr.decisive.values import Measured, bootstrap_delta, measure_values, wilson
from rlvr.generation.sampler import SamplingParams, sample

torch.set_num_threads(1)  # tiny ops: a second thread only spin-waits on a shared machine
WORD = "pairs"  # reward 1 iff the response contains this word (it may come at any step)


class Bigram(torch.nn.Module):
    """A fake causal LM whose next-token logits depend only on the last token: M[last]."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.table = logits

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None,
                use_cache=None, logits_to_keep=0):
        out = self.table[input_ids]
        return SimpleNamespace(logits=out[:, -logits_to_keep:] if logits_to_keep else out)


def _chain(tokenizer, seed: int) -> torch.Tensor:
    """Random bigram logits over the toy vocabulary: EOS about 1 in 6 steps, WORD about 1 in
    12, so outcomes stay uncertain over a dozen tokens; pad/bos/unk never drawn."""
    rng = np.random.default_rng(seed)
    v = len(tokenizer)
    logits = rng.normal(0, 1.5, (v, v))
    logits[:, [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id]] = -1e4
    logits[:, tokenizer.eos_token_id] = np.log(v / 5)
    logits[:, tokenizer.convert_tokens_to_ids(WORD)] = np.log(v / 11)
    return torch.tensor(logits, dtype=torch.float32)


def _grade(text: str, answer: str) -> int:
    return int(WORD in text.split())


def _exact_value(logits: torch.Tensor, tokenizer, last: int, prefix: list[int],
                 budget: int) -> float:
    """P(WORD appears | prompt ending in `last`, response prefix) when at most `budget` more
    tokens follow: h_r(s) = sum_v p(v|s) [v = WORD] + [v not in (WORD, EOS)] h_{r-1}(v)."""
    word, eos = tokenizer.convert_tokens_to_ids(WORD), tokenizer.eos_token_id
    if word in prefix:
        return 1.0
    if prefix and prefix[-1] == eos:
        return 0.0
    p = torch.softmax(logits.double(), -1).numpy()
    go = np.ones(len(p))
    go[[word, eos]] = 0.0
    h = np.zeros(len(p))
    for _ in range(budget):
        h = p[:, word] + p @ (go * h)
    return float(h[prefix[-1] if prefix else last])


@pytest.fixture(scope="module")
def setting(tokenizer):
    """A bigram generator and 12 of its own responses (cap 16), graded."""
    model = Bigram(_chain(tokenizer, 0))
    params = SamplingParams(1.0, 1.0, 16, seed=7)
    prompt = tokenizer("sum 3 5 :")["input_ids"]
    gens = sample(model, [prompt] * 12, [f"r{i}" for i in range(12)], params,
                  tokenizer.eos_token_id, tokenizer.pad_token_id)
    items = []
    for i, g in enumerate(gens):
        text = tokenizer.decode(g.response_ids, skip_special_tokens=True)
        items.append(Measured(f"r{i}", g.prompt_ids, g.response_ids, "", _grade(text, ""),
                              list(range(len(g.response_ids))), 16))
    return model, items, params


def test_outcomes_equal_rollouts_decoded_one_by_one(setting, tokenizer):
    """The common-random-number shortcut changes no outcome: each before/after outcome equals
    the rollout decoded from that prefix with the same stream, offset to the position."""
    model, items, params = setting
    values, cost = measure_values(model, tokenizer, items, 8, params, _grade, batch_size=64)
    assert cost["rollouts"] > 0
    for m, v in zip(items[:4], values[:4], strict=True):
        for t in m.positions:
            for prefix_len, got in ((t, v.before[m.positions.index(t)]),
                                    (t + 1, v.after[m.positions.index(t)])):
                head = m.response_ids[:prefix_len]
                if prefix_len == len(m.response_ids):  # the whole response: its own reward
                    assert (got == m.reward).all()
                    continue
                gens = sample(model, [m.prompt_ids + head] * 8, [f"{m.key}/{k}" for k in range(8)],
                              SamplingParams(1.0, 1.0, 16 - prefix_len, params.seed),
                              tokenizer.eos_token_id, tokenizer.pad_token_id,
                              offsets=[prefix_len] * 8)
                expected = [_grade(tokenizer.decode(head + g.response_ids,
                                                    skip_special_tokens=True), "") for g in gens]
                assert got.tolist() == expected, (m.key, t, prefix_len)


def test_values_are_unbiased_against_the_exact_dynamic_program(setting, tokenizer):
    """With many rollouts, V and ΔV match the Markov chain's exact success probabilities, and
    the Wilson intervals cover the exact V at about their nominal rate."""
    model, items, params = setting
    k = 200
    values, _ = measure_values(model, tokenizer, items, k, params, _grade, batch_size=512)
    est, exact, covered = [], [], []
    for m, v in zip(items, values, strict=True):
        for j, t in enumerate(m.positions):
            last = m.prompt_ids[-1]
            before = _exact_value(model.table, tokenizer, last, m.response_ids[:t], 16 - t)
            after = _exact_value(model.table, tokenizer, last, m.response_ids[: t + 1], 15 - t)
            est.append([v.before[j].mean(), v.after[j].mean()])
            exact.append([before, after])
            lo, hi = wilson(np.array([v.before[j].sum()]), k, 0.05)
            covered.append(lo[0] - 1e-9 <= before <= hi[0] + 1e-9)
    est, exact = np.array(est), np.array(exact)
    assert np.abs(est - exact).max() < 0.13  # about 3.7 standard errors at K = 200
    error = (est[:, 1] - est[:, 0]) - (exact[:, 1] - exact[:, 0])
    assert np.abs(error).mean() < 0.04 and abs(error.mean()) < 0.015  # ΔV: noise, no bias
    assert np.mean(covered) > 0.85
    assert (exact[:, 1] - exact[:, 0]).std() > 0.1  # the case is not trivial


def test_a_token_no_draw_leaves_costs_nothing_and_has_zero_delta(tokenizer):
    """Near-greedy sampling (top-p 0.01) keeps only the top token: a response of top tokens
    is never left, so no rollout is decoded and every ΔV is exactly 0."""
    model = Bigram(_chain(tokenizer, 1))
    params = SamplingParams(1.0, 0.01, 12, seed=3)
    prompt = tokenizer("sum 3 :")["input_ids"]
    (g,) = sample(model, [prompt], ["x"], params, tokenizer.eos_token_id, tokenizer.pad_token_id)
    text = tokenizer.decode(g.response_ids, skip_special_tokens=True)
    item = Measured("x", g.prompt_ids, g.response_ids, "", _grade(text, ""),
                    list(range(len(g.response_ids))), 12)
    (v,), cost = measure_values(model, tokenizer, [item], 16, params, _grade)
    assert cost == {"rollouts": 0, "rollout_tokens": 0}
    assert (v.resampled_other == 0).all() and (v.prob_token == 1.0).all()
    assert (v.before == item.reward).all() and (v.after == item.reward).all()


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (17, 40), (1, 1)])
def test_wilson_matches_scipy(k, n):
    lo, hi = wilson(np.array([k]), n, 0.05)
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert lo[0] == pytest.approx(ref.low, abs=1e-12) and hi[0] == pytest.approx(ref.high,
                                                                                    abs=1e-12)


def test_bootstrap_delta_matches_a_naive_resampling_bootstrap():
    rng = np.random.default_rng(0)
    k = 24
    before = (rng.random((40, k)) < rng.random((40, 1))).astype(np.int8)
    after = np.where(rng.random((40, k)) < 0.7, before, 1 - before).astype(np.int8)
    after[:5] = before[:5]  # no change: the interval is exactly [0, 0]
    lo, hi = bootstrap_delta(before, after, 4000, 0.05, seed=1)
    assert (lo[:5] == 0).all() and (hi[:5] == 0).all()
    d = after.astype(int) - before.astype(int)
    idx = rng.integers(0, k, (4000, k))
    means = d[:, idx].mean(-1)  # (rows, replicates): resample the K pairs with replacement
    ref_lo, ref_hi = np.quantile(means, 0.025, axis=1), np.quantile(means, 0.975, axis=1)
    # Monte-Carlo error of two independent bootstraps: a grid step of 1/K at most
    assert np.abs(lo - ref_lo).max() <= 1 / k + 1e-9 and np.abs(hi - ref_hi).max() <= 1 / k + 1e-9
    mean = d.mean(1)
    assert ((lo <= mean + 1e-9) & (mean <= hi + 1e-9)).all()
