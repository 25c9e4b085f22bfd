"""Measured decisiveness: how much committing to each token of a response moved its success odds.

For a response y of generator g, V(x) is the probability that g, continuing from prefix x, ends
with reward 1. Position t's decisiveness is ΔV_t = V(y_≤t) - V(y_<t): V(y_<t) resamples token t
from g and rolls the rest out again, V(y_≤t) keeps y_t and rolls out after it. Both are
estimated from K rollouts with common random numbers: rollout k draws the token at absolute
position s with uniform U_k[s] of one stream per (response, k), by inverse CDF. So a rollout from
prefix t that resamples y_t itself continues exactly as rollout k from prefix t + 1 does, and
only rollouts whose resampled token differs need decoding: a token the prefix determines costs
nothing and has ΔV = 0 exactly, not a noisy estimate of it.

For each k the outcome from prefix t is the reward of the rollout that starts at the first
position s >= t where k's resampled token differs from y_s (the response's own reward if none).
Intervals: Wilson for each V; for ΔV a percentile bootstrap over the K paired rollout outcomes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.generation.sampler import (
    SamplingParams,
    draw_index,
    left_pad,
    rank_tokens,
    sample,
    sampling_uniforms,
)

Grader = Callable[[str, str], int]


@dataclass(frozen=True)
class Measured:
    """One response to measure: ids as generated, its graded reward, and which positions."""

    key: str  # names the response's random streams, e.g. `<prompt_id>/<sample_id>`
    prompt_ids: list[int]
    response_ids: list[int]
    answer: str
    reward: int
    positions: list[int]  # 0-based positions of the response to measure
    max_new_tokens: int  # the response's own length cap: rollouts end where it would have


@dataclass(frozen=True)
class PositionValues:
    """Per measured position (arrays of the same length): rollout outcomes and the realised
    token's sampling probability."""

    before: np.ndarray  # (P, K) 0/1 outcome of rollout k from y_<t (token t resampled)
    after: np.ndarray  # (P, K) 0/1 outcome of rollout k from y_<=t
    resampled_other: np.ndarray  # (P,) rollouts whose resampled token differs from y_t
    prob_token: np.ndarray  # (P,) probability of y_t under g's sampling distribution


def wilson(successes: np.ndarray, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion, elementwise: (low, high)."""
    z = norm.ppf(1 - alpha / 2)
    p = np.asarray(successes, dtype=float) / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def bootstrap_delta(
    before: np.ndarray, after: np.ndarray, n_boot: int, alpha: float, seed: int,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of mean(after - before) over the K paired rollouts of each
    row: (P, K) 0/1 arrays -> (low, high), each (P,). Rows without a non-zero difference get
    [0, 0]: every resample of them is 0."""
    d = after.astype(int) - before.astype(int)
    k = d.shape[1]
    low, high = np.zeros(len(d)), np.zeros(len(d))
    rng = np.random.default_rng(seed)
    varied = np.flatnonzero((d != 0).any(1))
    for start in range(0, len(varied), chunk):
        rows = varied[start : start + chunk]
        # a paired difference is -1, 0 or +1: resampling K of them is one multinomial draw
        probs = np.stack([(d[rows] == v).mean(1) for v in (-1, 0, 1)], -1)
        counts = rng.multinomial(k, probs[:, None, :], size=(len(rows), n_boot))
        means = (counts[..., 2] - counts[..., 0]) / k
        low[rows] = np.quantile(means, alpha / 2, axis=1)
        high[rows] = np.quantile(means, 1 - alpha / 2, axis=1)
    return low, high


@torch.no_grad()
def resample(
    model: PreTrainedModel, items: Sequence[Measured], k: int | Sequence[int],
    sampling: SamplingParams, pad_id: int, batch_size: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per response: the token each of its k rollout streams draws at each position, (k, L),
    and the sampling probability of the realised tokens, (L,); one teacher-forced forward per
    batch. `k` is one count for all responses or one per response."""
    ks = [k] * len(items) if isinstance(k, int) else list(k)
    out = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        ids, mask, pos = left_pad([m.prompt_ids + m.response_ids for m in batch], pad_id)
        dev = model.device
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                       position_ids=pos.to(dev)).logits.float()
        for i, m in enumerate(batch):
            n, width, kk = len(m.response_ids), ids.shape[1], ks[start + i]
            rows = logits[i, width - n - 1 : width - 1]  # (L, V): the logits predicting y_t
            u = sampling_uniforms(sampling.seed, [f"{m.key}/{j}" for j in range(kk)], n)
            drawn = draw_tokens(rows, u, sampling.temperature, sampling.top_p)
            probs = _sampling_probs(rows, sampling)
            own = probs.gather(-1, torch.tensor(m.response_ids, device=dev)[:, None]).squeeze(-1)
            out.append((drawn.cpu().numpy(), own.cpu().numpy()))
    return out


def draw_tokens(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float,
                top_p: float) -> torch.Tensor:
    """What `pick_tokens` draws for every stream at every position, sorting each position's
    distribution once: logits (L, V), uniforms (K, L) -> token ids (K, L). The same float64
    arithmetic as `pick_tokens` on each row, so the same tokens (tested)."""
    if temperature == 0:
        return logits.argmax(-1)[None, :].expand(uniforms.shape[0], -1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    values, order = rank_tokens(probs, probs.shape[-1])  # pick_tokens' tie rule
    idx, _ = draw_index(values, uniforms.T, top_p, probs.sum(-1, keepdim=True))  # (L, K)
    return order.gather(-1, idx).T


def _sampling_probs(logits: torch.Tensor, sampling: SamplingParams) -> torch.Tensor:
    """The distribution `pick_tokens` samples from (temperature, top-p), (L, V) float64."""
    if sampling.temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).double()
    probs = torch.softmax(logits.double() / sampling.temperature, -1)
    sorted_probs, order = rank_tokens(probs, probs.shape[-1])
    keep = (sorted_probs.cumsum(-1) - sorted_probs) < sampling.top_p
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs * keep)
    return kept / kept.sum(-1, keepdim=True)


def first_divergence(differs: np.ndarray) -> np.ndarray:
    """(K, L) bool -> (K, L + 1): the first s >= t with differs[k, s], or L (none), per t."""
    k, n = differs.shape
    out = np.full((k, n + 1), n)
    for t in range(n - 1, -1, -1):
        out[:, t] = np.where(differs[:, t], t, out[:, t + 1])
    return out


def measure_values(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Measured],
    rollouts: int,
    sampling: SamplingParams,
    grader: Grader,
    batch_size: int = 512,
    progress: bool = False,
    draws: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[list[PositionValues], dict[str, int]]:
    """Rollout outcomes before and after each measured position of each response.

    `sampling` gives the generator's temperature, top-p and the seed of the rollout streams
    (its max_new_tokens is unused: each response carries its own cap); `draws` are
    `resample`'s for these items and `rollouts` (computed here when None). Returns one
    PositionValues per item and the cost: rollouts decoded and tokens they generated.
    """
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if draws is None:
        draws = resample(model, items, rollouts, sampling, pad, batch_size)
    # the rollout behind outcome (k, t) starts at first[k, t]; n (none) is the response itself
    firsts = [first_divergence(drawn != np.asarray(m.response_ids)[None, :])
              for m, (drawn, _) in zip(items, draws, strict=True)]
    needed = set()
    for i, (m, first) in enumerate(zip(items, firsts, strict=True)):
        cols = first[:, sorted({*m.positions, *(t + 1 for t in m.positions)})]
        ks, cs = np.nonzero(cols < len(m.response_ids))
        needed |= {(i, int(k), int(cols[k, c])) for k, c in zip(ks, cs, strict=True)}
    jobs = sorted(needed)
    rewards, tokens = roll_out(model, tokenizer, items, draws, jobs, sampling, grader,
                               batch_size, progress, eos, pad)
    reward_of = dict(zip(jobs, rewards, strict=True))
    results = []
    for i, (m, (drawn, prob), first) in enumerate(zip(items, draws, firsts, strict=True)):
        n, pos = len(m.response_ids), np.asarray(m.positions, dtype=int)

        def outcomes(cols: np.ndarray, i: int = i, n: int = n, first=first, m=m) -> np.ndarray:
            """(P, K) outcomes of the rollouts behind columns `cols` of `first`."""
            return np.array([[m.reward if s == n else reward_of[(i, k, s)]
                              for k, s in enumerate(first[:, t].tolist())] for t in cols],
                            dtype=np.int8).reshape(len(cols), rollouts)

        results.append(PositionValues(
            before=outcomes(pos), after=outcomes(pos + 1),
            resampled_other=(drawn[:, pos] != np.asarray(m.response_ids)[pos]).sum(0),
            prob_token=prob[pos],
        ))
    return results, {"rollouts": len(jobs), "rollout_tokens": tokens}


def roll_out(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, items: Sequence[Measured],
    draws: list[tuple[np.ndarray, np.ndarray]], jobs: list[tuple[int, int, int]],
    sampling: SamplingParams, grader: Grader, batch_size: int, progress: bool, eos: int,
    pad: int,
) -> tuple[list[int], int]:
    """Decode each job (item, k, s): y_<s, then k's resampled token at s, then g's continuation
    with k's stream from s + 1, up to the item's cap. Returns each job's reward and the tokens
    generated in all."""
    heads = [items[i].response_ids[:s] + [int(draws[i][0][k, s])] for i, k, s in jobs]
    budget = [items[i].max_new_tokens - len(h) for (i, _, _), h in zip(jobs, heads, strict=True)]
    live = [j for j, (h, b) in enumerate(zip(heads, budget, strict=True)) if h[-1] != eos and b > 0]
    live.sort(key=lambda j: -budget[j])  # similar lengths share a batch
    tails: dict[int, list[int]] = {}
    if live:
        params = SamplingParams(sampling.temperature, sampling.top_p, max(budget[j] for j in live),
                                sampling.seed)
        gens = sample(model, [items[jobs[j][0]].prompt_ids + heads[j] for j in live],
                      [f"{items[jobs[j][0]].key}/{jobs[j][1]}" for j in live], params, eos, pad,
                      batch_size=batch_size, progress=progress,
                      offsets=[jobs[j][2] + 1 for j in live])
        tails = {j: g.response_ids[: budget[j]] for j, g in zip(live, gens, strict=True)}
    rewards, n_tokens = [], 0
    for j, (i, _, _) in enumerate(jobs):
        ids = heads[j] + tails.get(j, [])
        n_tokens += len(tails.get(j, []))
        text = tokenizer.decode([t for t in ids if t != eos], skip_special_tokens=True)
        rewards.append(int(grader(text, items[i].answer)))
    return rewards, n_tokens
