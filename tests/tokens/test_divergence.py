"""Chunked pair statistics against an independent numpy/scipy reference on random logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax, rel_entr
from scipy.stats import entropy

from rlvr.tokens.divergence import LN2, js
from rlvr.tokens.pairstats import pair_statistics

V = 37  # not a multiple of any chunk size below


def _random_pair(seed: int, n: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logit rows with the hard cases: near one-hot, ruled-out (-inf) tokens, and both at once."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 2, (n, V)).astype(np.float32)
    b = (a + rng.normal(0, 1, (n, V))).astype(np.float32)
    a[:6, 3] += 60.0  # near one-hot base
    b[3:9, 5] += 60.0  # near one-hot tuned (rows 3-5: both, different winners)
    a[10:16][rng.random((6, V)) < 0.4] = -np.inf  # base rules tokens out
    b[13:19][rng.random((6, V)) < 0.4] = -np.inf  # tuned too, overlapping rows 13-15
    b[20] = a[20]  # identical rows
    y = rng.integers(0, V, n)
    y[11] = np.flatnonzero(np.isneginf(a[11]))[0]  # realised token the base rules out
    return a, b, y


def _tie_order(logits: np.ndarray) -> np.ndarray:
    """Ids by the tie rule: logit descending, then id ascending (numpy's lexsort, last key
    first)."""
    return np.lexsort((np.arange(len(logits)), -logits))


def _rank(logits: np.ndarray, token: int) -> int:
    return int(np.flatnonzero(_tie_order(logits) == token)[0]) + 1


def _top_p_probs(logits: np.ndarray, p: float) -> np.ndarray:
    probs = np.exp(log_softmax(logits.astype(np.float64)))
    order = _tie_order(logits)
    cum = np.cumsum(probs[order])
    keep = np.zeros(len(probs), bool)
    keep[order[(cum - probs[order]) < p]] = True
    out = np.where(keep, probs, 0.0)
    return out / out.sum()


def _reference(a: np.ndarray, b: np.ndarray, y: np.ndarray, p: float) -> dict[str, np.ndarray]:
    """Row by row in float64 with scipy, sharing no code with rlvr.tokens.divergence."""
    rows: dict[str, list[float]] = {}
    for ra, rb, t in zip(a.astype(np.float64), b.astype(np.float64), y, strict=True):
        la, lb = log_softmax(ra), log_softmax(rb)
        pa, pb = np.exp(la), np.exp(lb)
        top_a, top_b = _tie_order(ra), _tie_order(rb)
        values = {
            "logprob_base": la[t], "logprob_tuned": lb[t],
            "entropy_base": entropy(pa), "entropy_tuned": entropy(pb),
            "js": jensenshannon(pa, pb) ** 2,
            "kl_base_tuned": rel_entr(pa, pb).sum(), "kl_tuned_base": rel_entr(pb, pa).sum(),
            "rank_base": _rank(ra, t), "rank_tuned": _rank(rb, t),
            "top1_base": top_a[0], "top1_tuned": top_b[0],
            "rank_in_base_of_top1_tuned": _rank(ra, top_b[0]),
            "rank_in_tuned_of_top1_base": _rank(rb, top_a[0]),
            "prob_base_of_top1_tuned": pa[top_b[0]],
            "js_top_p": jensenshannon(_top_p_probs(ra, p), _top_p_probs(rb, p)) ** 2,
        }
        for k in range(1, 6):
            values[f"topk_overlap_{k}"] = len(set(top_a[:k]) & set(top_b[:k])) / k
        for key, v in values.items():
            rows.setdefault(key, []).append(v)
    return {k: np.asarray(v) for k, v in rows.items()}


def _stats(a, b, y, chunk: int, candidates: int, p: float = 0.7):
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)

    def logits_fn(rows, s, e):
        if rows is None:
            return ta[:, s:e], tb[:, s:e]
        return ta[rows, s:e], tb[rows, s:e]

    return pair_statistics(logits_fn, torch.from_numpy(y), V, chunk, p, candidates)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk", [8, 37, 64])
@pytest.mark.parametrize("candidates", [5, 64])  # 5: many nuclei spill past the candidates
def test_every_statistic_matches_scipy(seed: int, chunk: int, candidates: int) -> None:
    a, b, y = _random_pair(seed)
    got = _stats(a, b, y, chunk, candidates)
    ref = _reference(a, b, y, 0.7)
    assert set(got) == set(ref)
    for key, expected in ref.items():
        np.testing.assert_allclose(got[key].numpy(), expected, rtol=2e-5, atol=2e-6, err_msg=key)


def test_identical_across_chunk_sizes() -> None:
    """Integer statistics are equal; floats differ only by float32 summation order."""
    a, b, y = _random_pair(3)
    results = [_stats(a, b, y, chunk, 16) for chunk in (1, 5, 8, 36, 37, 100)]
    for other in results[1:]:
        for key, value in results[0].items():
            if value.dtype == torch.long:
                assert torch.equal(value, other[key]), key
            else:
                torch.testing.assert_close(value, other[key], rtol=2e-6, atol=5e-6, msg=key)


@pytest.mark.parametrize("p", [0.3, 0.7, 0.95, 1.0])
def test_js_top_p_tracks_p(p: float) -> None:
    a, b, y = _random_pair(4)
    got = _stats(a, b, y, 8, 5, p)["js_top_p"].numpy()
    np.testing.assert_allclose(got, _reference(a, b, y, p)["js_top_p"], rtol=2e-5, atol=2e-6)
    if p == 1.0:  # no truncation: plain JS
        np.testing.assert_allclose(got, _stats(a, b, y, 8, 5)["js"].numpy(), atol=2e-6)


def test_self_divergence_is_zero_and_js_bounded() -> None:
    a, _, y = _random_pair(5)
    same = _stats(a, a, y, 8, 16)
    for key in ("js", "js_top_p", "kl_base_tuned", "kl_tuned_base"):
        assert same[key].abs().max() <= 1e-6, key
    assert torch.equal(same["rank_in_base_of_top1_tuned"], torch.ones(len(y), dtype=torch.long))
    # disjoint supports: JS reaches ln 2 exactly and never exceeds it
    p = torch.tensor([[0.0, -math.inf], [0.0, 0.0]])
    q = torch.tensor([[-math.inf, 0.0], [0.0, 0.0]])
    value = js(torch.log_softmax(p, -1), torch.log_softmax(q, -1))
    assert value[0] == pytest.approx(LN2) and value[1] == pytest.approx(0.0, abs=1e-7)


def test_finite_logits_take_the_unguarded_path_exactly() -> None:
    """Without ruled-out ids (the usual case) the fast path must match scipy too."""
    a, b, y = _random_pair(6)
    rows = np.r_[0:10, 19:48]  # near one-hot rows kept, rows with -inf dropped
    a, b, y = a[rows], b[rows], y[rows]
    assert np.isfinite(a).all() and np.isfinite(b).all()
    got = _stats(a, b, y, 8, 64)
    for key, expected in _reference(a, b, y, 0.7).items():
        np.testing.assert_allclose(got[key].numpy(), expected, rtol=2e-5, atol=2e-6, err_msg=key)


def test_far_underflowing_log_probs_stay_exact() -> None:
    """Logit spreads of ~100s put most log-probs below exp's float32 underflow (~-87), where the
    scorer raises them to its floor: every statistic still matches scipy. (Row maxima are 0 so
    that float32 rounding of large logits does not swamp the comparison.)"""
    rng = np.random.default_rng(7)
    a = rng.normal(0, 40, (32, V))
    b = a + rng.normal(0, 20, (32, V))
    a, b = ((x - x.max(1, keepdims=True)).astype(np.float32) for x in (a, b))
    y = rng.integers(0, V, 32)
    got = _stats(a, b, y, 8, 16)
    assert (a - a.max(1, keepdims=True) < -87).mean() > 0.3  # the case is really hit
    for key, expected in _reference(a, b, y, 0.7).items():
        np.testing.assert_allclose(got[key].numpy(), expected, rtol=2e-5, atol=2e-6, err_msg=key)


def _tied_pair(seed: int, n: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits on a coarse grid, so most rows hold exact ties, at the top and around the
    realised token; some rows tied all across, some with tied -inf (ruled-out) ids, and some
    with huge magnitudes."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-3, 2, (n, V)).astype(np.float32)
    b = np.where(rng.random((n, V)) < 0.7, a, rng.integers(-3, 2, (n, V))).astype(np.float32)
    a[0] = 0.0  # every id tied: top-1 is id 0, ranks are id + 1
    b[1] = 0.0
    a[2:6][rng.random((4, V)) < 0.5] = -np.inf  # ruled-out ids tie with each other
    b[4:8][rng.random((4, V)) < 0.5] = -np.inf
    # extreme scale: near one-hot rows whose top ids still tie (row maxima 0, so that float32
    # rounding of large logits does not swamp the comparison)
    a[8:12] = (a[8:12] - a[8:12].max(1, keepdims=True)) * 30.0  # below exp32 underflow
    b[10:14] = (b[10:14] - b[10:14].max(1, keepdims=True)) * 30.0
    y = rng.integers(0, V, n)
    y[2] = np.flatnonzero(np.isneginf(a[2]))[0]  # a realised token tied with other -inf ids
    return a, b, y


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk", [5, 8, 37])
@pytest.mark.parametrize("candidates", [5, 64])
def test_tied_logits_follow_the_tie_rule_in_every_statistic(seed, chunk, candidates) -> None:
    """Ranks, top-1s, top-k overlaps and nuclei on exactly tied logits: lowest id first."""
    a, b, y = _tied_pair(seed)
    assert (np.sort(a, 1)[:, -5] == np.sort(a, 1)[:, -6]).mean() > 0.3  # 5th-value ties are hit
    got = _stats(a, b, y, chunk, candidates)
    ref = _reference(a, b, y, 0.7)
    for key, expected in ref.items():
        np.testing.assert_allclose(got[key].numpy(), expected, rtol=2e-5, atol=2e-6, err_msg=key)
    assert got["top1_base"][0] == 0 and torch.equal(got["rank_base"][0], torch.tensor(y[0] + 1))


def test_rank_one_means_the_same_in_every_column() -> None:
    """With one tie rule, `same top-1` reads the same from top1s, overlap@1 and both ranks."""
    a, b, y = _tied_pair(2, n=200)
    got = _stats(a, b, y, 8, 16)
    same = got["top1_base"] == got["top1_tuned"]
    assert 0.2 < same.float().mean() < 0.9  # both outcomes occur
    assert torch.equal(same, got["topk_overlap_1"] == 1)
    assert torch.equal(same, got["rank_in_base_of_top1_tuned"] == 1)
    assert torch.equal(same, got["rank_in_tuned_of_top1_base"] == 1)
    own = _stats(a, b, got["top1_base"].numpy(), 8, 16)  # each model's top-1 has its own rank 1
    assert torch.equal(own["rank_base"], torch.ones(len(y), dtype=torch.long))
