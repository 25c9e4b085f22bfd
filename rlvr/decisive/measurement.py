"""One generator's measurement under each design, as per-position columns of the table.

Every position of the measured responses gets a row (the population, `rlvr.decisive.design`):
`measure_exhaustive` rolls out K streams at the selected positions (`rlvr.decisive.values`);
`measure_stratified` draws the stratified sample and rolls out only diverging streams,
sequentially (`rlvr.decisive.sequential`). Positions the design did not draw keep null
measurements and status `unsampled`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from rlvr.decisive.design import stratify
from rlvr.decisive.sequential import measure_sequential
from rlvr.decisive.values import (
    Grader,
    Measured,
    bootstrap_delta,
    measure_values,
    resample,
    roll_out,
    wilson,
)
from rlvr.generation.sampler import SamplingParams
from rlvr.store.registry import TOKENS

if TYPE_CHECKING:
    from rlvr.decisive.positions import DecisiveParams


def _empty(n: int) -> dict[str, np.ndarray]:
    """Per-position columns of n unmeasured positions (filled in by the measurement)."""
    nan = np.full(n, np.nan)
    return {"status": np.full(n, "unsampled", dtype=object), "n_rollouts": np.zeros(n, int),
            "n_resampled_other": np.zeros(n, int),
            **{c: nan.copy() for c in ("value_before", "value_before_low",
                                        "value_before_high", "value_after", "value_after_low",
                                        "value_after_high", "delta_value", "delta_low",
                                        "delta_high")}}


def _offsets(items: list[Measured]) -> np.ndarray:
    """Row of each response's position 0 in the generator's population rows."""
    return np.cumsum([0] + [len(m.response_ids) for m in items])


def measure_exhaustive(model, tokenizer, items: list[Measured], sampling: SamplingParams,
                       grader: Grader, cfg: DecisiveParams, tokens: str, name: str,
                       progress: bool) -> tuple[dict, dict]:
    """K rollouts at each selected position (`rlvr.decisive.values`); Wilson intervals for
    both values and a paired bootstrap interval for ΔV."""
    draws = resample(model, items, cfg.rollouts, sampling, tokenizer.pad_token_id,
                     cfg.resources.batch_size)
    values, cost = measure_values(model, tokenizer, items, cfg.rollouts, sampling, grader,
                                  cfg.resources.batch_size, progress, draws)
    off = _offsets(items)
    cols = _empty(int(off[-1]))
    rows = np.concatenate([o + np.asarray(m.positions, int)
                           for o, m in zip(off[:-1], items, strict=True)])
    before = np.concatenate([v.before for v in values])
    after = np.concatenate([v.after for v in values])
    k = cfg.rollouts
    cols["status"][rows] = "fixed"
    cols["n_rollouts"][rows] = k
    cols["n_resampled_other"][rows] = np.concatenate([v.resampled_other for v in values])
    cols["value_before"][rows], cols["value_after"][rows] = before.mean(1), after.mean(1)
    cols["delta_value"][rows] = (after.astype(int) - before.astype(int)).mean(1)
    for name, outcome in (("value_before", before), ("value_after", after)):
        cols[f"{name}_low"][rows], cols[f"{name}_high"][rows] = wilson(outcome.sum(1), k,
                                                                       cfg.alpha)
    cols["delta_low"][rows], cols["delta_high"][rows] = bootstrap_delta(
        before, after, cfg.n_bootstrap, cfg.alpha, cfg.seed)
    lengths = np.repeat([len(m.response_ids) for m in items], np.diff(off))
    return {**cols, "prob_token": np.concatenate([p for _, p in draws]),
            "stratum": "all" if cfg.positions == 0 else "response",
            "inclusion_prob": np.minimum(1.0, cfg.positions / lengths) if cfg.positions
            else np.ones(len(lengths))}, cost


def measure_stratified(model, tokenizer, items: list[Measured], sampling: SamplingParams,
                       grader: Grader, cfg: DecisiveParams, tokens: str, name: str,
                       progress: bool) -> tuple[dict, dict]:
    """The stratified design (`rlvr.decisive.design`) over every position of the items, its
    drawn open positions measured sequentially (`rlvr.decisive.sequential`)."""
    min_cut = min(cfg.pivot_cuts)
    # enough streams that an open position (1 - p >= min_cut) expects 2 x max_rollouts diverging
    k_scan = math.ceil(2 * cfg.max_rollouts / min_cut)
    pad, eos, batch = tokenizer.pad_token_id, tokenizer.eos_token_id, cfg.resources.batch_size
    draws = resample(model, items, k_scan, sampling, pad, batch)
    prob = np.concatenate([p for _, p in draws])
    signals = _signals(tokens, items)
    stratum, incl, drawn = stratify(1 - prob, signals["js"], signals["entropy_base"], min_cut,
                                    cfg.stratum_share, cfg.per_stratum,
                                    cfg.uniform_positions, f"{cfg.seed}/{name}")
    off = _offsets(items)
    chosen = [np.flatnonzero(drawn[a:b] & (stratum[a:b] != "bound")).tolist()
              for a, b in zip(off[:-1], off[1:], strict=True)]
    tokens = [0]

    def decode(jobs: list[tuple[int, int, int]]) -> list[int]:
        rewards, n = roll_out(model, tokenizer, items, draws, jobs, sampling, grader, batch,
                              progress, eos, pad)
        tokens[0] += n
        return rewards

    found, cost = measure_sequential([d for d, _ in draws], [m.response_ids for m in items],
                                     [m.reward for m in items], chosen, [p for _, p in draws],
                                     decode, [cfg.stop_cut], cfg.min_rollouts,
                                     cfg.max_rollouts, cfg.alpha)
    cols = _empty(len(prob))
    bound = stratum == "bound"
    cols["status"][bound] = "bound"
    cols["delta_low"][bound], cols["delta_high"][bound] = prob[bound] - 1, 1 - prob[bound]
    for o, ts, res in zip(off[:-1], chosen, found, strict=True):
        for t, r in zip(ts, res, strict=True):
            i, p = o + t, prob[o + t]
            cols["status"][i] = {"cap": "capped", "streams": "no_streams"}.get(r.stop, r.stop)
            cols["n_rollouts"][i], cols["n_resampled_other"][i] = r.n_streams, r.n_diverging
            cols["delta_value"][i], cols["delta_low"][i], cols["delta_high"][i] = (
                r.delta, r.low, r.high)
            if r.n_diverging:
                a = wilson(np.array([r.value_after * r.n_diverging]), r.n_diverging, cfg.alpha)
                b = wilson(np.array([r.value_other * r.n_diverging]), r.n_diverging, cfg.alpha)
                cols["value_after"][i] = r.value_after
                cols["value_after_low"][i], cols["value_after_high"][i] = a[0][0], a[1][0]
                cols["value_before"][i] = p * r.value_after + (1 - p) * r.value_other
                cols["value_before_low"][i] = p * a[0][0] + (1 - p) * b[0][0]
                cols["value_before_high"][i] = p * a[1][0] + (1 - p) * b[1][0]
    cost = {**cost, "rollout_tokens": tokens[0], "streams_scanned": k_scan}
    return {**cols, "prob_token": prob, "stratum": stratum, "inclusion_prob": incl}, cost


def _signals(tokens: str, items: list[Measured]) -> dict[str, np.ndarray]:
    """js and base entropy of every position of the items, from their token partition."""
    table = TOKENS.read_files(TOKENS.partition_files(tokens),
                              ["prompt_id", "sample_id", "position", "js", "entropy_base"])
    at = {(p, s, t): i for i, (p, s, t) in enumerate(zip(
        *(table.column(c).to_pylist() for c in ("prompt_id", "sample_id", "position")),
        strict=True))}
    keys = [(m.key.split("/")[1], int(m.key.split("/")[2]), t) for m in items
            for t in range(len(m.response_ids))]
    missing = [k for k in keys if k not in at]
    if missing:
        raise ValueError(f"the token table {tokens} has no row for response position "
                         f"{missing[0]} ({len(missing)} missing); rerun the score stage "
                         "(dvc repro score)")
    rows = np.array([at[k] for k in keys])
    return {c: table.column(c).to_numpy()[rows].astype(float) for c in ("js", "entropy_base")}
