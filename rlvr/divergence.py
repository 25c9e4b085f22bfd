"""Exact per-position divergence math between two next-token distributions.

Inputs are float32 log-probabilities over the full vocabulary (rows = positions). Everything is
computed in log-space so `-inf` entries (tokens a model rules out) and near one-hot rows stay
exact; natural log throughout, so 0 <= JS <= ln 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LN2 = math.log(2.0)
TINY = torch.finfo(torch.float32).tiny


def _xlogy_sum(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """sum_v p_v * (log p_v - log q_v) with 0 * anything = 0: the KL(p || q) kernel, (...,)."""
    p = logp.exp()
    diff = torch.where(p > 0, logp - logq, torch.zeros_like(logp))
    return (p * diff).sum(-1)


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each row of log-probs (..., V) -> (...)."""
    p = logp.exp()
    return -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)


def kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) in nats per row (..., V) -> (...); inf where q rules out a token p allows."""
    return _xlogy_sum(logp, logq)


def js(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence per row (..., V) -> (...), in [0, ln 2]."""
    logm = torch.logaddexp(logp, logq) - LN2
    value = 0.5 * _xlogy_sum(logp, logm) + 0.5 * _xlogy_sum(logq, logm)
    return value.clamp(0.0, LN2)


# --- chunked statistics of a pair of distributions, streamed over vocabulary chunks ----------

# (rows or None for all rows, vocab start, vocab end) -> base and tuned logits, each (R', end-start)
LogitsFn = Callable[[torch.Tensor | None, int, int], tuple[torch.Tensor, torch.Tensor]]
MAX_OVERLAP_K = 5


def _js_terms(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """Per-row contribution of these vocabulary entries to JS(p, q) (unclamped), (R, C) -> (R,)."""
    logm = torch.logaddexp(lp, lq) - LN2
    # where both are ruled out logm is -inf too; the masks keep 0 * (-inf - -inf) out of the sum
    return 0.5 * _xlogy_sum(lp, logm) + 0.5 * _xlogy_sum(lq, logm)


def _merge_topk(vals, idx, chunk, offset, k):
    """Running top-k (values, global indices) merged with one chunk of logits (R, C)."""
    cv, ci = chunk.topk(min(k, chunk.shape[-1]), dim=-1)
    if vals.shape[-1] == 0:  # first chunk: nothing to merge with
        return cv, ci + offset
    vals, idx = torch.cat([vals, cv], -1), torch.cat([idx, ci + offset], -1)
    keep = vals.topk(min(k, vals.shape[-1]), dim=-1).indices
    return vals.gather(-1, keep), idx.gather(-1, keep)


def _nucleus(vals: torch.Tensor, lse: torch.Tensor, p: float):
    """Top-p truncated, renormalised probabilities over top-k logits sorted descending (R, K),
    zero past the nucleus, and a flag set where the top-k hold less than `p` of the mass (the
    nucleus may reach past them)."""
    probs = (vals - lse[:, None]).exp()
    cum = probs.cumsum(-1)
    keep = (cum - probs) < p  # same rule as generation.pick_tokens: at least the top token
    keep[:, 0] = True
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True), cum[:, -1] < p


def _js_candidates(pa: torch.Tensor, ia: torch.Tensor, pb: torch.Tensor, ib: torch.Tensor):
    """JS of two sparse distributions given as (probabilities, ids), each (R, K) -> (R,).

    The two id lists are merged by sorting (R, 2K): O(K log K) per row, not O(K^2).
    """
    ids, order = torch.cat([ia, ib], -1).sort(-1)
    zeros = torch.zeros_like(pa)
    p = torch.cat([pa, zeros], -1).gather(-1, order)
    q = torch.cat([zeros, pb], -1).gather(-1, order)
    # an id is at most once per list, so at most twice here, in adjacent slots: fold the
    # second slot into the first
    dup = ids[:, 1:] == ids[:, :-1]
    none = torch.zeros_like(dup[:, :1])
    is_second, has_second = torch.cat([none, dup], -1), torch.cat([dup, none], -1)

    def fold(x: torch.Tensor) -> torch.Tensor:
        nxt = torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], -1)
        return torch.where(is_second, 0.0, x + torch.where(has_second, nxt, 0.0))

    p, q = fold(p), fold(q)
    return 0.5 * _kl_to_mixture(p, q) + 0.5 * _kl_to_mixture(q, p)


def _kl_to_mixture(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """sum_v p_v log(p_v / m_v), m = (p + q) / 2, over entries with p_v > 0: (R, C) -> (R,)."""
    ratio = torch.where(p > 0, 2 * p / (p + q), 1.0)
    return (p * ratio.log()).sum(-1)


def js_top_p_dense(a: torch.Tensor, b: torch.Tensor, p: float) -> torch.Tensor:
    """JS between the top-p truncated, renormalised softmaxes of full logit rows (R, V) -> (R,)."""
    out = []
    for x in (a, b):
        lp = torch.log_softmax(x.float(), -1)
        sp, order = lp.exp().sort(-1, descending=True)
        keep_sorted = (sp.cumsum(-1) - sp) < p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        mass = torch.where(keep, lp.exp(), 0).sum(-1, keepdim=True)
        out.append(torch.where(keep, lp - mass.log(), -math.inf))
    return _js_terms(*out).clamp(0.0, LN2)


@torch.no_grad()
def pair_statistics(
    logits_fn: LogitsFn,
    targets: torch.Tensor,
    vocab_size: int,
    vocab_chunk: int,
    top_p: float = 0.7,
    top_p_candidates: int = 64,
) -> dict[str, torch.Tensor]:
    """Every per-position statistic of the (base, tuned) pair, exact over the full vocabulary.

    `logits_fn(None, s, e)` returns both models' float32 logits for vocabulary ids [s, e) of all
    R rows; `targets` (R,) are the realised tokens. Two passes over the vocabulary: the first
    finds log-normalisers, realised-token logits, top-1s and the top `top_p_candidates` ids
    (top-k overlaps and the top-p nuclei come from these); the second accumulates entropies,
    KLs, JS and ranks. Peak extra memory is about
    20 * R * (vocab_chunk + top_p_candidates) floats; rows whose top-p nucleus is wider than
    `top_p_candidates` get their top-p JS from one full row at a time (O(V) more, a 1/hidden
    fraction of the output-embedding matrix). Returns float32/int64 tensors (R,) named as the
    token-table columns (without `delta_logprob`).
    """
    assert vocab_size >= MAX_OVERLAP_K, "top-k overlap needs at least 5 vocabulary entries"
    n = len(targets)
    k = min(max(MAX_OVERLAP_K, top_p_candidates), vocab_size)
    chunks = [(s, min(s + vocab_chunk, vocab_size)) for s in range(0, vocab_size, vocab_chunk)]
    cached = None  # with a single chunk, pass 2 reuses pass 1's logits
    dev = targets.device
    neg = torch.full((n,), -math.inf, device=dev)
    lse_a, lse_b, a_y, b_y = neg.clone(), neg.clone(), neg.clone(), neg.clone()
    best_a, best_b, a_at_top1_b = neg.clone(), neg.clone(), neg.clone()
    arg_a = arg_b = torch.zeros(n, dtype=torch.long, device=dev)
    top_a = top_b = torch.empty(n, 0, device=dev)
    idx_a = idx_b = torch.empty(n, 0, dtype=torch.long, device=dev)
    for s, e in chunks:
        a, b = logits_fn(None, s, e)
        if len(chunks) == 1:
            cached = (a, b)
        lse_a = torch.logaddexp(lse_a, a.logsumexp(-1))
        lse_b = torch.logaddexp(lse_b, b.logsumexp(-1))
        here = (targets >= s) & (targets < e)
        local = (targets - s).clamp(0, e - s - 1)[:, None]
        a_y = torch.where(here, a.gather(-1, local).squeeze(-1), a_y)
        b_y = torch.where(here, b.gather(-1, local).squeeze(-1), b_y)
        # first maximum wins across chunks, as within a chunk
        ca, ia = a.max(-1)
        cb, ib = b.max(-1)
        up_a, up_b = ca > best_a, cb > best_b
        best_a, arg_a = torch.where(up_a, ca, best_a), torch.where(up_a, ia + s, arg_a)
        best_b, arg_b = torch.where(up_b, cb, best_b), torch.where(up_b, ib + s, arg_b)
        a_at_top1_b = torch.where(up_b, a.gather(-1, ib[:, None]).squeeze(-1), a_at_top1_b)
        top_a, idx_a = _merge_topk(top_a, idx_a, a, s, k)
        top_b, idx_b = _merge_topk(top_b, idx_b, b, s, k)
    nuc_a, wide_a = _nucleus(top_a, lse_a, top_p)
    nuc_b, wide_b = _nucleus(top_b, lse_b, top_p)
    # with every id among the candidates the nucleus is always inside them (mass < p is rounding)
    wide = (wide_a | wide_b) & (k < vocab_size)
    js_p = _js_candidates(nuc_a, idx_a, nuc_b, idx_b)
    zero, count = torch.zeros(n, device=dev), torch.zeros(n, dtype=torch.long, device=dev)
    ent_a, ent_b, kl_ab, kl_ba, js_v = (zero.clone() for _ in range(5))
    rank_a, rank_b, rank_top1_b = count.clone() + 1, count.clone() + 1, count.clone() + 1
    for s, e in chunks:
        a, b = cached if cached is not None else logits_fn(None, s, e)
        # one exp per model and one log per entry: the cost that matters on wide vocabularies
        lp_a, lp_b = a - lse_a[:, None], b - lse_b[:, None]
        p_a, p_b = lp_a.exp(), lp_b.exp()
        diff = lp_a - lp_b
        if torch.isfinite(a).all() and torch.isfinite(b).all():
            # no ruled-out ids: an underflowed p is an exact 0 times a finite log, no guards
            ent_a -= (p_a * lp_a).sum(-1)
            ent_b -= (p_b * lp_b).sum(-1)
            kl_ab += (p_a * diff).sum(-1)
            kl_ba -= (p_b * diff).sum(-1)
            log_m = (p_a + p_b).clamp_min(TINY).log() - LN2
            js_v += 0.5 * (p_a * (lp_a - log_m) + p_b * (lp_b - log_m)).sum(-1)
        else:
            on_a, on_b = p_a > 0, p_b > 0  # entries a model rules out contribute nothing
            ent_a -= torch.where(on_a, p_a * lp_a, 0.0).sum(-1)
            ent_b -= torch.where(on_b, p_b * lp_b, 0.0).sum(-1)
            kl_ab += torch.where(on_a, p_a * diff, 0.0).sum(-1)
            kl_ba -= torch.where(on_b, p_b * diff, 0.0).sum(-1)
            log_m = (p_a + p_b).log() - LN2
            js_v += 0.5 * (torch.where(on_a, p_a * (lp_a - log_m), 0.0).sum(-1)
                           + torch.where(on_b, p_b * (lp_b - log_m), 0.0).sum(-1))
        rank_a += (a > a_y[:, None]).sum(-1)
        rank_b += (b > b_y[:, None]).sum(-1)
        rank_top1_b += (a > a_at_top1_b[:, None]).sum(-1)
    for rows in wide.nonzero().squeeze(-1).split(max(1, n * vocab_chunk // vocab_size)):
        parts = [logits_fn(rows, s, e) for s, e in chunks]
        full_a = torch.cat([x for x, _ in parts], -1)
        full_b = torch.cat([y for _, y in parts], -1)
        js_p[rows] = js_top_p_dense(full_a, full_b, top_p)
    overlap = {
        f"topk_overlap_{j}": (idx_a[:, :j, None] == idx_b[:, None, :j]).any(-1).sum(-1).float() / j
        for j in range(1, MAX_OVERLAP_K + 1)
    }
    log_v = math.log(vocab_size)
    # the clamps only absorb float32 rounding (e.g. -1e-8 entropy of a one-hot row)
    return {
        "logprob_base": a_y - lse_a,
        "logprob_tuned": b_y - lse_b,
        "entropy_base": ent_a.clamp(0.0, log_v),
        "entropy_tuned": ent_b.clamp(0.0, log_v),
        "js": js_v.clamp(0.0, LN2),
        "kl_base_tuned": kl_ab.clamp(min=0.0),
        "kl_tuned_base": kl_ba.clamp(min=0.0),
        "rank_base": rank_a,
        "rank_tuned": rank_b,
        "top1_base": arg_a,
        "top1_tuned": arg_b,
        "rank_in_base_of_top1_tuned": rank_top1_b,
        "prob_base_of_top1_tuned": (a_at_top1_b - lse_a).exp(),
        **overlap,
        "js_top_p": js_p.clamp(0.0, LN2),
    }
