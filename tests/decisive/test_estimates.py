"""Horvitz-Thompson estimates of the decisive stage against brute force: every sample a
stratified design can draw from a small population, each equally likely, averages to the
population's own totals; with every position measured they are plain counts and scipy's
Mann-Whitney AUC."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from rlvr.decisive.estimates import _auc_sums, detection, is_pivotal, pair_scale


def _population(seed: int, n: int = 11) -> pd.DataFrame:
    """n positions in 3 responses: signals with ties, a known ΔV with an interval."""
    rng = np.random.default_rng(seed)
    dv = rng.choice([0.0, 0.05, 0.25, -0.4], n, p=[0.4, 0.2, 0.25, 0.15])
    return pd.DataFrame({
        "generator": "tuned", "prompt_id": [f"p{i % 3}" for i in range(n)], "sample_id": 0,
        "position": np.arange(n), "js": rng.choice([0.0, 0.1, 0.3, 0.5], n),
        "entropy_base": rng.gamma(1, 1, n), "abs_delta": rng.random(n),
        "delta_value": dv, "delta_low": dv - 0.1, "delta_high": dv + 0.1,
    })


def _designs(pop: pd.DataFrame, strata: np.ndarray, takes: dict[str, int]):
    """Every sample of the stratified design (simple random samples of `takes[h]` per
    stratum h), as (measured mask, inclusion probabilities)."""
    members = {h: np.flatnonzero(strata == h) for h in takes}
    prob = np.ones(len(pop))
    for h, m in members.items():
        prob[m] = takes[h] / len(m)
    for picks in itertools.product(*(itertools.combinations(m, takes[h])
                                      for h, m in members.items())):
        measured = np.zeros(len(pop), bool)
        measured[[i for p in picks for i in p]] = True
        yield measured, prob


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ht_totals_are_unbiased_over_every_stratified_sample(seed):
    """The pivotal count, the flagged true positives and both AUC pair sums (with the joint
    inclusion probabilities of sampling without replacement) average to the population's."""
    pop = _population(seed)
    strata = np.array(["bound", "js", "js", "js", "js", "uniform", "uniform", "uniform",
                       "uniform", "uniform", "js"])
    takes = {"bound": 1, "js": 2, "uniform": 3}
    y_all = is_pivotal(pop, 0.2)
    score = pop["js"].to_numpy()
    true_num = sum((score[i] > score[j]) + 0.5 * (score[i] == score[j])
                   for i in np.flatnonzero(y_all) for j in np.flatnonzero(~y_all))
    true_den = y_all.sum() * (~y_all).sum()
    flagged = score >= 0.3
    totals = []
    for measured, prob in _designs(pop, strata, takes):
        frame = pop.assign(stratum=strata, inclusion_prob=prob, is_measured=measured)
        y = y_all & measured
        w = np.where(measured, 1 / prob, 0.0)
        group, scale = pair_scale(frame)
        num, den = _auc_sums(score, y, measured & ~y, w, group, scale,
                             np.zeros(len(pop), int), 1)
        totals.append([(y * w).sum(), (y * flagged * w).sum(), num.sum(), den.sum()])
    expected = [y_all.sum(), (y_all & flagged).sum(), true_num, true_den]
    assert len(totals) == 1 * 10 * 10  # C(1, 1) x C(5, 2) x C(5, 3) samples
    np.testing.assert_allclose(np.mean(totals, 0), expected, rtol=1e-12)
    assert true_num > 0 and 0 < true_den


@pytest.mark.parametrize("n", [20, 48, 300])
def test_zero_upper_is_clopper_pearson_over_the_sampled_strata(n):
    """Equal weights: scipy's exact bound for 0 of n, scaled by the sampled strata's share of
    the population; certain positions (weight 1) add nothing; a census is bounded at its size."""
    from scipy.stats import binomtest

    from rlvr.decisive.estimates import zero_upper

    def exact(k: int) -> float:
        return binomtest(0, k).proportion_ci(confidence_level=0.95, method="exact").high

    # n positions drawn at weight 3 (3n in their strata) beside 5n certain ones: population 8n
    w = np.r_[np.full(n, 3.0), np.ones(5 * n)]
    assert zero_upper(w, 8 * n, 0.05) == pytest.approx(3 / 8 * exact(n), rel=1e-9)
    assert zero_upper(np.ones(n), n, 0.05) == pytest.approx(exact(n), rel=1e-9)
    unequal = np.r_[np.full(n, 2.0), np.full(n, 18.0)]  # Kish: n_eff = (20 n)^2 / (328 n)
    got = zero_upper(unequal, 20 * n, 0.05)
    assert got == pytest.approx(1 - 0.025 ** (328 / (400 * n)), rel=1e-9)


def test_a_frame_without_pivotal_positions_gets_the_bound_not_a_zero_width_interval():
    pop = _population(0).assign(delta_value=0.0, delta_low=-0.1, delta_high=0.1,
                                stratum="all", inclusion_prob=1.0, is_measured=True)
    got = detection(pop, [0.2], [0.1], 50, 0.05, 0)
    assert (got.n_pivotal == 0).all() and (got.base_rate == 0).all()
    assert got.base_rate_high.iloc[0] == pytest.approx(1 - 0.025 ** (1 / len(pop)))
    assert got.auc.isna().all()
