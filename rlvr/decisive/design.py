"""Which positions the decisive stage rolls out, and with what inclusion probability.

The population is every position of the measured responses. A design assigns each position a
stratum and an inclusion probability π (the chance the design rolls it out); estimates weight
each rolled-out position by 1/π (`rlvr.decisive.estimates`), so shares and AUCs describe the
whole population whatever the design oversampled.

- `exhaustive`: every position (stratum `all`, π = 1), or `positions` drawn uniformly per
  response (stratum `response`, π = positions / length; `rlvr.decisive.positions`), each
  with K rollouts.
- `stratified`: positions whose realised token has sampling probability p > 1 - min(cut)
  cannot be pivotal (|ΔV| <= 1 - p, `rlvr.decisive.sequential`): stratum `bound`, π = 1, no
  rollout. The other ("open") positions are split into the top `stratum_share` by JS (`js`),
  then the top `stratum_share` of the rest by base entropy (`entropy`), and the rest
  (`uniform`); each signal stratum gives a simple random sample of `per_stratum` positions
  and the uniform one of `uniform_positions` (all of them if fewer), π = n_h / N_h. The
  uniform stratum holds most open positions (on the toy also most pivotal ones: among open
  positions JS and entropy barely rank them), hence its own, larger sample.
"""

from __future__ import annotations

import math
import random

import numpy as np

SIGNAL_STRATA = ("js", "entropy")


def stratify(
    gap: np.ndarray, js: np.ndarray, entropy: np.ndarray, min_cut: float, share: float,
    per_stratum: int, uniform: int, seed: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stratified design over a population of N positions.

    gap (N,) = 1 - p of each realised token; js, entropy (N,) its signals. Returns the stratum
    of each position (N,) str, its inclusion probability (N,) float64 and whether the sample
    drew it (N,) bool. Ties in a signal are broken by population order; `seed` names the
    sampling stream (e.g. the generator), so the draw is reproducible.
    """
    n = len(gap)
    stratum = np.full(n, "uniform", dtype=object)
    stratum[gap < min_cut] = "bound"
    open_ = np.flatnonzero(stratum != "bound")
    top = math.ceil(share * len(open_))
    rest = open_
    for name, signal in zip(SIGNAL_STRATA, (js, entropy), strict=True):
        order = rest[np.argsort(-np.asarray(signal)[rest], kind="stable")]
        stratum[order[:top]] = name
        rest = order[top:]
    prob = np.ones(n)
    drawn = stratum == "bound"
    for name in (*SIGNAL_STRATA, "uniform"):
        members = np.flatnonzero(stratum == name)
        take = min(uniform if name == "uniform" else per_stratum, len(members))
        pick = random.Random(f"{seed}/{name}").sample(members.tolist(), take)
        drawn[pick] = True
        prob[members] = take / len(members) if len(members) else 1.0
    return stratum.astype(str), prob, drawn
