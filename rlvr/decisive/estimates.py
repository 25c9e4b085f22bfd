"""Pivotal shares and each signal's precision, recall and AUC under any position design.

The frame is one row per position of the measured responses (the population): its signals
(known everywhere, from the token table), its stratum and inclusion probability π, and, where
the design measured it, ΔV with its interval. A measured position is *pivotal* at cut c when
|ΔV| >= c and its interval excludes 0 (the exhaustive and the sequential designs share this
rule; a `bound` position is measured without rollouts and is never pivotal).

Horvitz-Thompson weights make every total unbiased for the population's: the pivotal count
sum(y / π), the true positives among flagged positions, and the AUC's pair sums, whose pairs
(i pivotal, j not) carry 1 / π_ij, the pair's joint inclusion probability (π_i π_j across
strata, π_i (n_h - 1) / (N_h - 1) within one: simple random sampling without replacement;
tests/decisive/test_estimates.py enumerates every sample of small populations). Shares and
precision divide by exact population counts; recall and AUC are ratios of unbiased totals
(consistent, not unbiased). A signal flags the positions that fewer than a share q of the
population outscore (ties at the cut all flagged), so flags are exact, not estimated.

Intervals: percentile bootstrap over responses (the i.i.d. units a generator produces), each
replicate reweighting whole responses, so both the sampling of responses and the design's
sampling within them show; labels are taken as measured. With no pivotal position measured
every replicate is 0, so the share's upper end is then a Clopper-Pearson bound at the
design's effective sample size (`zero_upper`). With every position measured (the
exhaustive design) the point estimates are the plain counts and the Mann-Whitney AUC.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SIGNALS = ("js", "entropy_base", "abs_delta")


def zero_upper(weights: np.ndarray, n_population: int, alpha: float) -> float:
    """Upper 1 - alpha/2 bound of the pivotal share when none of the measured positions (design
    weights `weights`) is pivotal. Positions measured with certainty (weight 1: the `bound`
    stratum, censused strata) are exact zeros; the sampled ones bound their strata's share by
    Clopper-Pearson for 0 successes, 1 - (alpha/2)^(1/n), at Kish's effective sample size
    n = (sum w)^2 / sum w^2. A census (every weight 1) reads its positions as i.i.d. draws of
    the generator's: the same bound at n = all of them."""
    sampled = weights[weights > 1 + 1e-9]
    if not len(sampled):
        return float(1 - (alpha / 2) ** (1 / len(weights)))
    n = sampled.sum() ** 2 / (sampled**2).sum()
    return float(sampled.sum() / n_population * (1 - (alpha / 2) ** (1 / n)))


def is_pivotal(frame: pd.DataFrame, cut: float) -> np.ndarray:
    """Measured, |ΔV| >= cut and its interval excludes 0: (N,) bool (nulls read false)."""
    dv = frame["delta_value"].to_numpy(float, na_value=np.nan)
    lo = frame["delta_low"].to_numpy(float, na_value=np.nan)
    hi = frame["delta_high"].to_numpy(float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return (np.abs(dv) >= cut) & ((lo > 0) | (hi < 0))


def pair_scale(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, float]]:
    """Each position's pair group (its stratum; per response for the `response` design) and,
    per group, π_i π_j / π_ij for two of its measured positions: (n - 1) N / (n (N - 1))."""
    stratum = frame["stratum"].to_numpy(str)
    response = (frame["prompt_id"].astype(str) + "/" + frame["sample_id"].astype(str)).to_numpy()
    group = np.where(stratum == "response", np.char.add("response/", response.astype(str)),
                     stratum)
    measured = frame["is_measured"].to_numpy(bool)
    scale = {}
    for g in np.unique(group):
        rows = (group == g) & measured
        n = int(rows.sum())
        big_n = round(n / frame["inclusion_prob"].to_numpy(float)[rows][0]) if n else 0
        scale[g] = (n - 1) * big_n / (n * (big_n - 1)) if n > 1 and big_n > n else 1.0
    return group, scale


def _auc_sums(score: np.ndarray, pos: np.ndarray, neg: np.ndarray, w: np.ndarray,
              group: np.ndarray, scale: dict[str, float], cluster: np.ndarray, n_cluster: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """HT pair sums of the AUC, aggregated by (cluster of i, cluster of j): the numerator
    sum W_ij ([s_i > s_j] + [s_i = s_j] / 2) and the denominator sum W_ij, each (C, C)."""
    pi, nj = np.flatnonzero(pos), np.flatnonzero(neg)
    weight = np.outer(w[pi], w[nj])
    same = group[pi][:, None] == group[nj][None, :]
    if same.any():
        per_row = np.array([scale[g] for g in group[pi]])
        weight = np.where(same, weight / per_row[:, None], weight)
    s_i, s_j = score[pi][:, None], score[nj][None, :]
    win = weight * ((s_i > s_j) + 0.5 * (s_i == s_j))
    onehot_p = np.zeros((len(pi), n_cluster))
    onehot_p[np.arange(len(pi)), cluster[pi]] = 1
    onehot_n = np.zeros((len(nj), n_cluster))
    onehot_n[np.arange(len(nj)), cluster[nj]] = 1
    return onehot_p.T @ win @ onehot_n, onehot_p.T @ weight @ onehot_n


def detection(frame: pd.DataFrame, cuts: list[float], shares: list[float], n_boot: int,
              alpha: float, seed: int) -> pd.DataFrame:
    """Per generator, signal, cut and flag share: population and measured counts, the pivotal
    share (`base_rate`), precision, recall and AUC, with bootstrap intervals for the share and
    the AUC. frame: generator, prompt_id, sample_id, js, entropy_base, abs_delta, stratum,
    inclusion_prob, is_measured, delta_value, delta_low, delta_high."""
    rows = []
    for generator, g in frame.groupby("generator", sort=True):
        g = g.reset_index(drop=True)
        rows += _generator_rows(generator, g, cuts, shares, n_boot, alpha, seed)
    return pd.DataFrame(rows)


def _generator_rows(generator: str, g: pd.DataFrame, cuts: list[float], shares: list[float],
                    n_boot: int, alpha: float, seed: int) -> list[dict]:
    keys = g["prompt_id"].astype(str) + "/" + g["sample_id"].astype(str)
    cluster = pd.factorize(keys)[0]
    n_cluster = int(cluster.max()) + 1
    rng = np.random.default_rng(seed)
    mult = rng.multinomial(n_cluster, np.full(n_cluster, 1 / n_cluster), size=n_boot)  # (B, C)
    measured = g["is_measured"].to_numpy(bool)
    w = np.where(measured, 1 / g["inclusion_prob"].to_numpy(float), 0.0)
    group, scale = pair_scale(g)
    sizes = np.bincount(cluster, minlength=n_cluster).astype(float)

    def by_cluster(values: np.ndarray) -> np.ndarray:
        return np.bincount(cluster, weights=values, minlength=n_cluster)

    def interval(reps: np.ndarray) -> tuple[float | None, float | None]:
        reps = reps[np.isfinite(reps)]
        if not len(reps):
            return None, None
        lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
        return float(lo), float(hi)

    out = []
    for cut in cuts:
        y = is_pivotal(g, cut) & measured
        pivotal_w = by_cluster(y * w)
        share = pivotal_w.sum() / len(g)
        share_lo, share_hi = interval(mult @ pivotal_w / (mult @ sizes))
        if not y.any():  # every replicate is 0: bound the share by the measured sample instead
            share_lo, share_hi = 0.0, zero_upper(w[measured], len(g), alpha)
        for signal in SIGNALS:
            score = g[signal].to_numpy(float)
            num, den = _auc_sums(score, y, measured & ~y, w, group, scale, cluster, n_cluster)
            with np.errstate(invalid="ignore", divide="ignore"):
                auc = num.sum() / den.sum() if den.sum() > 0 else np.nan
                reps = (np.einsum("bc,cd,bd->b", mult, num, mult)
                        / np.einsum("bc,cd,bd->b", mult, den, mult))
            auc_lo, auc_hi = interval(reps)
            ordered = np.sort(score)
            higher = len(score) - np.searchsorted(ordered, score, side="right")
            for q in shares:
                flagged = higher < q * len(g)
                hit_w = (y & flagged) * w
                out.append({
                    "generator": generator, "signal": signal, "pivot_cut": cut,
                    "flag_share": q, "n_positions": len(g), "n_measured": int(measured.sum()),
                    "n_pivotal": int(y.sum()), "n_flagged": int(flagged.sum()),
                    "n_true_positive": int((y & flagged).sum()),
                    "base_rate": share, "base_rate_low": share_lo, "base_rate_high": share_hi,
                    "precision": hit_w.sum() / flagged.sum() if flagged.any() else np.nan,
                    "recall": hit_w.sum() / (y * w).sum() if y.any() else np.nan,
                    "auc": auc, "auc_low": auc_lo, "auc_high": auc_hi,
                })
    return out
