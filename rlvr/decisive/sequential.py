"""Decisiveness with few rollouts: only the draws that leave the response, stopped early.

Rao-Blackwellised ΔV. With common random numbers (`rlvr.decisive.values`), rollout stream k
gives the same outcome before and after position t unless its draw at t differs from the
realised token y_t. So with p = P(y_t) under the generator's sampling,

    ΔV_t = (1 - p) * (A - B),  A = V(y_<=t),  B = V(y_<t, a token other than y_t),

and p is computed exactly from the logits. The streams whose draw at t differs ("diverging")
are i.i.d. draws from the conditional law (the selection depends on their uniform at t only),
so for each of them d_k = after_k - before_k in {-1, 0, 1} is an i.i.d. sample with mean
A - B. Only diverging streams are rolled out; a position with 1 - p below the smallest pivot
cut cannot be pivotal at all (|ΔV| <= 1 - p) and needs none.

Early stopping. A position's diverging streams are rolled out in rounds (min_rollouts, then
doubling up to max_rollouts) and it stops once its interval settles the stop cuts (the stage
passes its middle pivot cut): |ΔV| >= c for sure, or |ΔV| < c for sure. Stopping on the data
makes fixed-sample intervals anticonservative (monitored after every round, a 95% normal
interval misses far more than 5% of the time: tests/decisive/test_sequential.py), so the
interval is a confidence sequence: the hedged betting construction of Waudby-Smith & Ramdas
("Estimating means of bounded random variables by betting", JRSS-B 2024), which holds at
every sample size at once (Ville's inequality) and so at any stopping time. The point estimate
at a data-dependent stop is not unbiased; the interval is what the pivotal label reads.

Rollouts are jobs (response, stream, start) exactly as in `rlvr.decisive.values`; a job is
decoded once and shared by every position and round that needs it (an after-rollout of t is
the before-rollout of the stream's next diverging position).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rlvr.decisive.values import first_divergence

GRID = np.linspace(0.0, 1.0, 2001)  # candidate means of x in [0, 1]
BET_CAP = 0.75  # bets stay below c/m: a step never loses more than 3/4 of the capital


def betting_interval(x: np.ndarray, alpha: float) -> tuple[float, float]:
    """Anytime-valid 1 - alpha confidence interval for the mean of i.i.d. x in [0, 1] observed
    in order: the hedged betting confidence sequence with predictable plug-in bets, intersected
    over time, on a grid of candidate means (widened by one grid step, so it stays valid).

    For a candidate m the capitals K+ = prod(1 + l+_i (x_i - m)) and K- = prod(1 - l-_i (x_i - m))
    are nonnegative martingales when m is the mean (the bets l use x_<i only), and so is
    (K+ + K-) / 2; m is rejected once max(K+, K-) / 2 >= 1 / alpha, which by Ville's inequality
    happens for the true mean with probability <= alpha over the whole sequence.
    """
    n = len(x)
    if n == 0:
        return 0.0, 1.0
    x = np.asarray(x, dtype=float)
    t = np.arange(1, n + 1)
    mean = (0.5 + np.cumsum(x)) / (t + 1)
    var = (0.25 + np.cumsum((x - mean) ** 2)) / (t + 1)
    bet = np.sqrt(2 * math.log(2 / alpha) / (np.r_[0.25, var[:-1]] * t * np.log1p(t)))
    m = GRID[None, :]
    with np.errstate(divide="ignore"):
        up = np.minimum(bet[:, None], BET_CAP / m)
        down = np.minimum(bet[:, None], BET_CAP / (1 - m))
    gap = x[:, None] - m
    log_up = np.cumsum(np.log1p(up * gap), 0)
    log_down = np.cumsum(np.log1p(-down * gap), 0)
    rejected = (np.maximum(log_up, log_down) + math.log(0.5) >= math.log(1 / alpha)).any(0)
    kept = np.flatnonzero(~rejected)
    if len(kept) == 0:  # narrower than a grid step: the best-supported candidate
        kept = np.array([int(np.argmin(np.maximum(log_up, log_down)[-1]))])
    lo, hi = max(kept[0] - 1, 0), min(kept[-1] + 1, len(GRID) - 1)
    return float(GRID[lo]), float(GRID[hi])


def delta_interval(d: np.ndarray, gap: float, alpha: float) -> tuple[float, float]:
    """Interval of ΔV = gap * E[d] from paired differences d in {-1, 0, 1} (gap = 1 - p)."""
    lo, hi = betting_interval((np.asarray(d, dtype=float) + 1) / 2, alpha)
    return gap * (2 * lo - 1), gap * (2 * hi - 1)


def decided(low: float, high: float, cuts: Sequence[float]) -> bool:
    """True when the interval [low, high] of ΔV settles every cut: |ΔV| >= c or |ΔV| < c."""
    return all(low >= c or high <= -c or (-c < low and high < c) for c in cuts)


@dataclass(frozen=True)
class Sequential:
    """One measured position's sequential estimate."""

    delta: float  # (1 - p) * mean(d): ΔV's point estimate
    low: float  # anytime-valid interval of ΔV
    high: float
    value_after: float  # mean of the after-outcomes: V(y_<=t)
    value_other: float  # mean of the before-outcomes: V(y_<t, another token)
    n_streams: int  # streams scanned (the K of the exhaustive design)
    n_diverging: int  # diverging streams rolled out (d's sample size)
    stop: str  # decided | cap (max_rollouts) | streams (no diverging stream left)


# (response index, stream, start position) -> reward, for many jobs at once
RollOut = Callable[[list[tuple[int, int, int]]], list[int]]


def measure_sequential(
    drawn: Sequence[np.ndarray], responses: Sequence[Sequence[int]], rewards: Sequence[int],
    positions: Sequence[Sequence[int]], prob: Sequence[np.ndarray], roll_out: RollOut,
    cuts: Sequence[float], min_rollouts: int, max_rollouts: int, alpha: float,
) -> tuple[list[list[Sequential]], dict[str, int]]:
    """Sequential ΔV at `positions[i]` of each response i.

    drawn[i] (K, L): each stream's draw at each position (common random numbers); prob[i] (L,)
    the realised tokens' sampling probabilities; roll_out decodes jobs (i, k, s): y_<s, then
    stream k's draw at s, then the generator with stream k from s + 1. Rounds roll out
    min_rollouts, 2 * min_rollouts, ... up to max_rollouts diverging streams of every position
    whose interval does not yet settle every cut of `cuts`. Returns per response its positions'
    estimates, and the cost: distinct jobs decoded and jobs asked for (the difference was
    shared).
    """
    n_items = len(responses)
    diverging, nxt = [], []
    for i in range(n_items):
        differs = drawn[i] != np.asarray(responses[i])[None, :]
        diverging.append(differs)
        nxt.append(first_divergence(differs))
    reward_of: dict[tuple[int, int, int], int] = {}
    asked = 0
    state = {(i, t): [] for i in range(n_items) for t in positions[i]}  # d's so far
    streams = {key: np.flatnonzero(diverging[key[0]][:, key[1]]) for key in state}
    final: dict[tuple[int, int], Sequential] = {}
    size = min_rollouts
    while state:
        plan = {key: streams[key][len(d) : size] for key, d in state.items()}
        wanted = [(i, int(k), s) for (i, t), ks in plan.items() for k in ks
                  for s in (t, int(nxt[i][k, t + 1])) if s < len(responses[i])]
        asked += len(wanted)
        new = sorted(set(wanted) - reward_of.keys())
        reward_of.update(zip(new, roll_out(new), strict=True))
        for (i, t), ks in plan.items():
            n = len(responses[i])

            def outcome(k: int, s: int, i: int = i, n: int = n) -> int:
                return int(rewards[i]) if s >= n else reward_of[(i, k, s)]

            d = state[(i, t)]
            d += [outcome(int(k), int(nxt[i][k, t + 1])) - outcome(int(k), t) for k in ks]
            gap = 1.0 - float(prob[i][t])
            low, high = delta_interval(np.array(d), gap, alpha)
            capped, dry = len(d) >= max_rollouts, len(d) == len(streams[(i, t)])
            if decided(low, high, cuts) or capped or dry or not d:
                used = streams[(i, t)][: len(d)]
                after = [outcome(int(k), int(nxt[i][k, t + 1])) for k in used]
                before = [outcome(int(k), t) for k in used]
                final[(i, t)] = Sequential(
                    gap * float(np.mean(d)) if d else 0.0, low, high,
                    float(np.mean(after)) if d else float("nan"),
                    float(np.mean(before)) if d else float("nan"),
                    int(used[-1]) + 1 if d else drawn[i].shape[0], len(d),
                    "decided" if decided(low, high, cuts) else "cap" if capped else "streams")
        state = {key: d for key, d in state.items() if key not in final}
        size = min(2 * size, max_rollouts)
    out = [[final[(i, t)] for t in positions[i]] for i in range(n_items)]
    return out, {"rollouts": len(reward_of), "rollouts_asked": asked}
