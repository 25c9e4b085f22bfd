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


def _top_p_probs(logits: np.ndarray, p: float) -> np.ndarray:
    probs = np.exp(log_softmax(logits.astype(np.float64)))
    order = np.argsort(-probs, kind="stable")
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
        top_a, top_b = np.argsort(-ra, kind="stable"), np.argsort(-rb, kind="stable")
        values = {
            "logprob_base": la[t], "logprob_tuned": lb[t],
            "entropy_base": entropy(pa), "entropy_tuned": entropy(pb),
            "js": jensenshannon(pa, pb) ** 2,
            "kl_base_tuned": rel_entr(pa, pb).sum(), "kl_tuned_base": rel_entr(pb, pa).sum(),
            "rank_base": 1 + (ra > ra[t]).sum(), "rank_tuned": 1 + (rb > rb[t]).sum(),
            "top1_base": top_a[0], "top1_tuned": top_b[0],
            "rank_in_base_of_top1_tuned": 1 + (ra > ra[top_b[0]]).sum(),
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
