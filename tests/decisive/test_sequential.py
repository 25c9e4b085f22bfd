"""The sequential design against independent math: the betting interval's coverage under the
worst stopping rule (Monte Carlo, where a monitored fixed-sample interval fails), the
diverging-stream estimator against the bigram chain's exact success probabilities, its
outcomes against the exhaustive estimator's, and the stratified draw's inclusion
probabilities against their frequencies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlvr.decisive.design import stratify
from rlvr.decisive.sequential import betting_interval, decided, delta_interval, measure_sequential
from rlvr.decisive.values import draw_tokens, measure_values, resample, roll_out
from rlvr.generation.sampler import SamplingParams, pick_tokens
from tests.decisive.test_values import Bigram, _chain, _exact_value, _grade

LOOKS = (8, 16, 32, 64)


@pytest.mark.parametrize("probs", [(0.1, 0.8, 0.1), (0.05, 0.6, 0.35), (0.5, 0.0, 0.5)])
def test_betting_interval_holds_under_the_worst_stopping_rule(probs):
    """Stop the first time the interval misses the true mean (the rule that makes a miss
    most likely): the betting interval misses in at most ~alpha of sequences, a normal
    interval monitored at the same looks in far more."""
    rng = np.random.default_rng(0)
    mean = 0.5 * probs[1] + probs[2]  # x in {0, 0.5, 1}
    runs, miss, naive_miss = 300, 0, 0
    for _ in range(runs):
        x = rng.choice([0.0, 0.5, 1.0], size=LOOKS[-1], p=probs)
        miss += any(not lo <= mean <= hi for lo, hi in (betting_interval(x[:n], 0.05)
                                                        for n in LOOKS))
        half = [1.96 * x[:n].std(ddof=1) / np.sqrt(n) for n in LOOKS]
        naive_miss += any(abs(x[:n].mean() - mean) > h for n, h in zip(LOOKS, half,
                                                                        strict=True))
    assert miss / runs <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / runs)
    assert naive_miss / runs > 0.1  # the bias the sequential interval avoids


def test_betting_interval_narrows_and_brackets_the_mean():
    x = np.r_[np.full(60, 0.5), [1.0] * 4]
    lo, hi = betting_interval(x, 0.05)
    assert lo < x.mean() < hi and hi - lo < 0.25
    assert betting_interval(np.array([]), 0.05) == (0.0, 1.0)
    assert delta_interval(np.zeros(64), 0.3, 0.05)[1] < 0.1  # |ΔV| < 0.1 settled


@pytest.mark.parametrize("interval,expected", [
    ((0.35, 0.6), True),  # above every cut
    ((-0.05, 0.08), True),  # below every cut
    ((0.15, 0.25), False),  # straddles 0.2
    ((-0.25, -0.05), False),  # straddles -0.1 and -0.2
])
def test_decided_needs_every_cut_settled(interval, expected):
    assert decided(*interval, [0.1, 0.2, 0.3]) is expected


def test_draw_tokens_equals_pick_tokens_row_by_row():
    """One sort per position gives pick_tokens' draws for every stream: ties, -inf logits,
    top-p and temperature included."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 50, generator=gen) * 3
    logits[1, :10] = 2.0  # ties
    logits[2, 5:] = -float("inf")
    u = torch.rand(40, 7, generator=gen, dtype=torch.float64)
    for temperature, top_p in ((1.0, 1.0), (0.7, 0.9), (1.3, 0.5), (0.0, 1.0)):
        got = draw_tokens(logits, u, temperature, top_p)
        ref = torch.stack([pick_tokens(logits, u[k], temperature, top_p) for k in range(40)])
        assert torch.equal(got, ref), (temperature, top_p)


@pytest.fixture(scope="module")
def chain(tokenizer):
    """A bigram generator and 12 of its own responses (cap 16), with their draws."""
    from tests.decisive.test_values import Measured, sample

    model = Bigram(_chain(tokenizer, 0))
    params = SamplingParams(1.0, 1.0, 16, seed=7)
    prompt = tokenizer("sum 3 5 :")["input_ids"]
    gens = sample(model, [prompt] * 12, [f"r{i}" for i in range(12)], params,
                  tokenizer.eos_token_id, tokenizer.pad_token_id)
    items = [Measured(f"r{i}", g.prompt_ids, g.response_ids, "",
                      _grade(tokenizer.decode(g.response_ids, skip_special_tokens=True), ""),
                      list(range(len(g.response_ids))), 16) for i, g in enumerate(gens)]
    return model, items, params


def _sequential(model, tokenizer, items, params, k_scan, max_rollouts, cuts=(0.1, 0.2, 0.3)):
    draws = resample(model, items, k_scan, params, tokenizer.pad_token_id, 512)
    positions = [[t for t in m.positions if 1 - p[t] >= min(cuts)]
                 for m, (_, p) in zip(items, draws, strict=True)]

    def decode(jobs):
        return roll_out(model, tokenizer, items, draws, jobs, params, _grade, 512, False,
                        tokenizer.eos_token_id, tokenizer.pad_token_id)[0]

    found, cost = measure_sequential([d for d, _ in draws], [m.response_ids for m in items],
                                     [m.reward for m in items], positions,
                                     [p for _, p in draws], decode, list(cuts), 8,
                                     max_rollouts, 0.05)
    return draws, positions, found, cost


def test_sequential_delta_against_the_exact_chain(chain, tokenizer):
    """ΔV = (1 - p)(A - B) from diverging streams only: its intervals cover the chain's exact
    ΔV, decided positions are right about their cuts, and |ΔV| <= 1 - p (the bound that
    skips positions) holds for the exact values."""
    model, items, params = chain
    draws, positions, found, cost = _sequential(model, tokenizer, items, params, 1280, 64)
    assert cost["rollouts"] < cost["rollouts_asked"]  # neighbours shared rollouts
    exact, covered, wrong, stops = [], [], 0, set()
    for m, (_, prob), ts, res in zip(items, draws, positions, found, strict=True):
        last = m.prompt_ids[-1]
        for t in range(len(m.response_ids)):
            before = _exact_value(model.table, tokenizer, last, m.response_ids[:t], 16 - t)
            after = _exact_value(model.table, tokenizer, last, m.response_ids[: t + 1], 15 - t)
            assert abs(after - before) <= 1 - prob[t] + 1e-9
            if t in ts:
                r = res[ts.index(t)]
                exact.append(after - before)
                covered.append(r.low - 1e-9 <= after - before <= r.high + 1e-9)
                stops.add(r.stop)
                if r.stop == "decided":
                    wrong += any((r.low >= c or r.high <= -c) != (abs(after - before) >= c)
                                 for c in (0.1, 0.2, 0.3))
    assert len(exact) > 30 and np.std(exact) > 0.1  # not a trivial case
    assert np.mean(covered) >= 0.95 and wrong <= 1
    assert stops >= {"decided", "cap"}


def test_sequential_outcomes_are_the_exhaustive_ones(chain, tokenizer):
    """Same streams, same outcomes: the diverging streams' before/after means equal those of
    the exhaustive estimator restricted to the same streams."""
    model, items, params = chain
    k = 200
    draws, positions, found, _ = _sequential(model, tokenizer, items, params, k, 16)
    values, _ = measure_values(model, tokenizer, items, k, params, _grade, 512, draws=draws)
    checked = 0
    for m, (drawn, _), ts, res, v in zip(items, draws, positions, found, values, strict=True):
        for t, r in zip(ts, res, strict=True):
            if not r.n_diverging:
                continue
            used = np.flatnonzero(drawn[:, t] != m.response_ids[t])[: r.n_diverging]
            j = m.positions.index(t)
            assert r.value_after == pytest.approx(v.after[j, used].mean())
            assert r.value_other == pytest.approx(v.before[j, used].mean())
            assert r.n_streams == used[-1] + 1
            checked += 1
    assert checked > 20


def test_stratify_inclusion_probabilities_match_their_frequencies():
    rng = np.random.default_rng(3)
    n = 200
    gap = np.where(rng.random(n) < 0.5, 0.01, rng.random(n))
    js, entropy = rng.random(n), rng.random(n)
    counts = np.zeros(n)
    for seed in range(400):
        stratum, prob, drawn = stratify(gap, js, entropy, 0.1, 0.1, 6, 9, str(seed))
        counts += drawn
    assert set(stratum) == {"bound", "js", "entropy", "uniform"}
    assert (prob[stratum == "bound"] == 1).all() and (gap[stratum == "bound"] < 0.1).all()
    open_js = js[stratum != "bound"]
    assert js[stratum == "js"].min() >= np.quantile(open_js, 0.85)
    for h, n in (("js", 6), ("entropy", 6), ("uniform", 9)):
        members = stratum == h
        assert prob[members] == pytest.approx(n / members.sum())
    # frequencies within 4.5 binomial standard errors of pi, position by position
    se = np.sqrt(prob * (1 - prob) / 400) + 1e-9
    assert (np.abs(counts / 400 - prob) <= 4.5 * se).all()
