"""Every per-position statistic of a (base, tuned) model pair, exact over the full vocabulary.

`pair_statistics` streams both models' logits over blocks of positions and vocabulary ids and
returns the token-table columns: realised-token log-probs and ranks, entropies, both KLs, JS,
top-1s, top-k overlaps and the top-p truncated JS. Float32 log-space throughout (the math of
`rlvr.tokens.divergence`, checked against scipy in tests/tokens/), vectorised over rows, so
that its cost stays close to that of the output head that produces the logits.

Tie rule (one for every rank, top-1, top-k set and top-p nucleus): token ids are ordered by
float32 logit, highest first, and equal logits by lowest id first. So the rank of id v is
1 + #{u: x_u > x_v} + #{u < v: x_u = x_v}, a model's top-1 is its lowest-id argmax (rank 1),
and its top-k set is the first k ids of that order.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from rlvr.tokens.divergence import LN2, entropy, js, kl

# (rows or None for all rows, vocab start, vocab end) -> base and tuned logits, each (R', end-start)
LogitsFn = Callable[[torch.Tensor | None, int, int], tuple[torch.Tensor, torch.Tensor]]
MAX_OVERLAP_K = 5
_CANDIDATES = MAX_OVERLAP_K + 1  # one more than the top-k: a tie at the k-th value shows up
# exp's inputs (log-probabilities, or logits minus their maximum) are raised to FLOOR: below
# about -87 float32 exp underflows, and its underflow path is ~50x slower on a CPU. Raising a
# probability under e^-60 ~ 1e-26 to it moves no sum by more than V * 1e-26 * |log p|, far below
# float32 resolution, so every statistic is still exact to float32.
FLOOR = -60.0


def _order(vals: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates (R, K) sorted by the tie rule: value descending, then id ascending."""
    idx, by_id = idx.sort(-1)
    vals, by_value = vals.gather(-1, by_id).sort(dim=-1, descending=True, stable=True)
    return vals, idx.gather(-1, by_value)


def _merge_topk(vals, idx, chunk, offset, k):
    """Running top-k (values, global indices, tie-rule order) merged with a chunk (R, C).

    The values are exact; among ids tied at the k-th value the choice may be `topk`'s, which
    `pair_statistics` detects (k-th value = (k-1)-th) and redoes on the full row.
    """
    cv, ci = chunk.topk(min(k, chunk.shape[-1]), dim=-1)
    if vals.shape[-1]:
        cv, ci = torch.cat([vals, cv], -1), torch.cat([idx, ci + offset], -1)
    else:
        ci = ci + offset
    cv, ci = _order(cv, ci)
    return cv[:, :k], ci[:, :k]


def _exact_top(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k (values, ids) of full rows (R, V) under the tie rule: a stable sort."""
    vals, idx = x.sort(dim=-1, descending=True, stable=True)
    return vals[:, :k], idx[:, :k]


def _nucleus(vals: torch.Tensor, lse: torch.Tensor, p: float):
    """Top-p truncated, renormalised probabilities over top-k logits in tie-rule order (R, K),
    zero past the nucleus, and a flag set where the nucleus may reach past the candidates: it
    holds the last one, or its last member ties with the last one (a lower id may lie beyond)."""
    probs = (vals - lse[:, None]).exp()
    cum = probs.cumsum(-1)
    keep = (cum - probs) < p  # same rule as generation.pick_tokens: at least the top token
    keep[:, 0] = True
    kept = probs * keep
    last = vals.gather(-1, keep.sum(-1, keepdim=True) - 1).squeeze(-1)
    return kept / kept.sum(-1, keepdim=True), keep[:, -1] | (last == vals[:, -1])


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
        order = x.float().sort(dim=-1, descending=True, stable=True).indices  # the tie rule
        sp = lp.exp().gather(-1, order)
        keep_sorted = (sp.cumsum(-1) - sp) < p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        mass = torch.where(keep, lp.exp(), 0).sum(-1, keepdim=True)
        out.append(torch.where(keep, lp - mass.log(), -math.inf))
    return js(*out)


def _js_top_p_rows(a: torch.Tensor, b: torch.Tensor, lse_a: torch.Tensor, lse_b: torch.Tensor,
                   p: float, k: int) -> torch.Tensor:
    """Top-p JS of full logit rows (R, V) whose nucleus is wider than the top 5: from the top
    `k` of each row where those hold the nucleus, by a full sort of the row otherwise."""
    k = min(k, a.shape[-1])
    (va, ia), (vb, ib) = _order(*a.topk(k, -1)), _order(*b.topk(k, -1))
    nuc_a, wide_a = _nucleus(va, lse_a, p)
    nuc_b, wide_b = _nucleus(vb, lse_b, p)
    out = _js_candidates(nuc_a, ia, nuc_b, ib)
    wide = (wide_a | wide_b) & (k < a.shape[-1])
    if wide.any():
        out[wide] = js_top_p_dense(a[wide], b[wide], p)
    return out


def _logsumexp(x: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dimension, (R, C) -> (R,), exp's inputs raised to FLOOR."""
    m = x.amax(-1, keepdim=True)
    out = (x - m).clamp_min_(FLOOR).exp_().sum(-1).log_() + m.squeeze(-1)
    return torch.where(m.squeeze(-1) == -math.inf, -math.inf, out)  # every id ruled out


def _sums(a: torch.Tensor, b: torch.Tensor, lse_a: torch.Tensor, lse_b: torch.Tensor):
    """This chunk's contributions to (H(p), H(q), KL(p||q), KL(q||p), JS(p, q)), each (R,)."""
    lp_a, lp_b = a - lse_a[:, None], b - lse_b[:, None]
    # p = exp(log p) of the same rounded values: a softmax computed apart (exps / their sum)
    # differs from it in the last bits, by ~1e-6 in log p at logits ~20, and the two
    # disagreeing moved JS of a near-identical pair by 2% (1.2e-6; the float64 test)
    p_a, p_b = lp_a.clamp_min(FLOOR).exp_(), lp_b.clamp_min(FLOOR).exp_()
    # every product goes through one scratch block and later values reuse earlier blocks: a
    # fresh block per operation costs about as much again in page faults as the arithmetic
    scratch = torch.empty_like(lp_a)

    def dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.mul(x, y, out=scratch).sum(-1)

    out = [-dot(p_a, lp_a), -dot(p_b, lp_b)]
    # a ruled-out id (-inf logit) makes p * log p infinite above: redo those rows with the
    # zero-guarded row math (each entry's JS term is >= 0, so clamping a chunk's share is exact)
    bad = ~(out[0].isfinite() & out[1].isfinite())
    guarded = (lp_a[bad], lp_b[bad]) if bad.any() else None
    diff = lp_a - lp_b
    out += [dot(p_a, diff), -dot(p_b, diff)]
    log_m = torch.add(p_a, p_b, out=diff).log_().sub_(LN2)
    out.append(0.5 * (dot(p_a, lp_a.sub_(log_m)) + dot(p_b, lp_b.sub_(log_m))))
    if guarded is not None:
        la, lb = guarded
        exact = [entropy(la), entropy(lb), kl(la, lb), kl(lb, la), js(la, lb)]
        for o, m in zip(out, exact, strict=True):
            o[bad] = m
    return out


def _rank_above(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Entries of each row of x (R, C) that the tie rule ranks above value t (R,) at column y
    (R,; may lie outside 0..C-1): x > t, or x = t at a column below y. int64 (R,)."""
    # one sign pass and two float reductions: sum(s) = #gt - #lt and s.s = #gt + #lt, exact
    # below 2^24 entries and ~3x cheaper than summing bool masks (int64 conversion)
    d = (x - t[:, None]).sign_()
    net, moved = d.sum(-1), torch.linalg.vecdot(d, d)
    above = (net + moved) / 2
    own = ((y >= 0) & (y < x.shape[-1])).to(x.dtype)  # the row's own entry ties with t
    # rows needing the exact count: other entries tie with t, or NaN (-inf - -inf)
    odd = ~(x.shape[-1] - moved <= own)
    if odd.any():
        xs, ts, ys = x[odd], t[odd, None], y[odd, None]
        col = torch.arange(x.shape[-1], device=x.device)
        above[odd] = ((xs > ts) | ((xs == ts) & (col < ys))).sum(-1).to(above.dtype)
    return above.long()


def _candidate_rank(idx: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1-based position of `target` (R,) among the first 5 ids of `idx` (R, K), else 0."""
    hit = idx[:, :MAX_OVERLAP_K] == target[:, None]
    return torch.where(hit.any(-1), hit.long().argmax(-1) + 1, 0)


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
    R rows; `targets` (R,) are the realised tokens. A vocabulary of at most `vocab_chunk` ids is
    one block, computed once and read in one pass after its normalisers; a wider one is streamed
    twice (normalisers, realised-token logits and top-6s first; entropies, KLs, JS and ranks
    second), so peak extra memory is about 12 * R * min(V, vocab_chunk) floats whatever V is.
    Ranks, top-1s, top-k sets and nuclei follow the module's tie rule; rows with a tie at the
    5th value are redone by a stable sort of the full row. The top-p nucleus comes from the top
    6 where those hold `top_p` of the mass (the usual case), else from the row's top
    `top_p_candidates`, else from a sort of the whole row (both on the full rows of just those
    positions). Returns float32/int64 tensors (R,) named as the
    token-table columns (without `delta_logprob`).
    """
    assert vocab_size >= MAX_OVERLAP_K, "top-k overlap needs at least 5 vocabulary entries"
    assert vocab_chunk <= 2**24, "ranks are counted in float32: vocab_chunk must be <= 2**24"
    n, dev = len(targets), targets.device
    chunks = [(s, min(s + vocab_chunk, vocab_size)) for s in range(0, vocab_size, vocab_chunk)]
    cached = None  # with a single chunk, the second pass and the nucleus reuse these logits

    def full_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if cached is not None:
            return cached[0][rows], cached[1][rows]
        parts = [logits_fn(rows, s, e) for s, e in chunks]
        return torch.cat([x for x, _ in parts], -1), torch.cat([y for _, y in parts], -1)

    def row_groups(mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rows of `mask` in groups of at most one block of full rows."""
        return mask.nonzero().squeeze(-1).split(max(1, n * vocab_chunk // vocab_size))

    neg = torch.full((n,), -math.inf, device=dev)
    lse_a, lse_b, a_y, b_y, a_at_top1_b, b_at_top1_a = (neg.clone() for _ in range(6))
    top_a = top_b = torch.empty(n, 0, device=dev)
    idx_a = idx_b = torch.empty(n, 0, dtype=torch.long, device=dev)
    for s, e in chunks:
        a, b = logits_fn(None, s, e)
        if len(chunks) == 1:
            cached = (a, b)
        lse_a = torch.logaddexp(lse_a, _logsumexp(a))
        lse_b = torch.logaddexp(lse_b, _logsumexp(b))
        here = (targets >= s) & (targets < e)
        local = (targets - s).clamp(0, e - s - 1)[:, None]
        a_y = torch.where(here, a.gather(-1, local).squeeze(-1), a_y)
        b_y = torch.where(here, b.gather(-1, local).squeeze(-1), b_y)
        top_a, idx_a = _merge_topk(top_a, idx_a, a, s, _CANDIDATES)
        top_b, idx_b = _merge_topk(top_b, idx_b, b, s, _CANDIDATES)
        # a model's top-1 has an id in this chunk only if it was found in this chunk
        for at_other, idx, other in ((a_at_top1_b, idx_b, a), (b_at_top1_a, idx_a, b)):
            new = idx[:, 0] >= s
            at = (idx[:, :1] - s).clamp(0, e - s - 1)
            at_other.copy_(torch.where(new, other.gather(-1, at).squeeze(-1), at_other))
    if top_a.shape[-1] == _CANDIDATES:
        # ids tied at the 5th value may lie outside the candidates: redo those rows exactly
        tied = (top_a[:, -1] == top_a[:, -2]) | (top_b[:, -1] == top_b[:, -2])
        for rows in row_groups(tied):
            full_a, full_b = full_rows(rows)
            (top_a[rows], idx_a[rows]), (top_b[rows], idx_b[rows]) = (
                _exact_top(full_a, _CANDIDATES), _exact_top(full_b, _CANDIDATES))
            a_at_top1_b[rows] = full_a.gather(-1, idx_b[rows, :1]).squeeze(-1)
            b_at_top1_a[rows] = full_b.gather(-1, idx_a[rows, :1]).squeeze(-1)
    sums = [torch.zeros(n, device=dev) for _ in range(5)]  # H(p), H(q), KL(p||q), KL(q||p), JS
    # ranks: an id among a row's first 5 candidates (exact in tie-rule order) has its rank
    # there; only the other rows (e.g. a sampled token outside the top 5) count the vocabulary
    ranks = [_candidate_rank(idx, target) for idx, target in
             ((idx_a, targets), (idx_b, targets), (idx_a, idx_b[:, 0]), (idx_b, idx_a[:, 0]))]
    counts = [(rank == 0).nonzero().squeeze(-1) for rank in ranks]
    above = [torch.zeros(len(rows), dtype=torch.long, device=dev) for rows in counts]
    for s, e in chunks:
        a, b = cached if cached is not None else logits_fn(None, s, e)
        for acc, part in zip(sums, _sums(a, b, lse_a, lse_b), strict=True):
            acc += part
        for acc, rows, (x, value, at) in zip(above, counts, (
                (a, a_y, targets), (b, b_y, targets), (a, a_at_top1_b, idx_b[:, 0]),
                (b, b_at_top1_a, idx_a[:, 0])), strict=True):
            if len(rows):
                acc += _rank_above(x[rows], value[rows], at[rows] - s)
    for rank, rows, acc in zip(ranks, counts, above, strict=True):
        rank[rows] = 1 + acc
    rank_a, rank_b, rank_top1_b, rank_top1_a = ranks
    nuc_a, wide_a = _nucleus(top_a, lse_a, top_p)
    nuc_b, wide_b = _nucleus(top_b, lse_b, top_p)
    js_p = _js_candidates(nuc_a, idx_a, nuc_b, idx_b)
    wide = (wide_a | wide_b) & (top_a.shape[-1] < vocab_size)
    # rows whose nucleus may be wider than the candidates
    for rows in row_groups(wide):
        full_a, full_b = full_rows(rows)
        js_p[rows] = _js_top_p_rows(full_a, full_b, lse_a[rows], lse_b[rows], top_p,
                                    top_p_candidates)
    overlap = {
        f"topk_overlap_{j}": (idx_a[:, :j, None] == idx_b[:, None, :j]).any(-1).sum(-1).float() / j
        for j in range(1, MAX_OVERLAP_K + 1)
    }
    ent_a, ent_b, kl_ab, kl_ba, js_v = sums
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
        "top1_base": idx_a[:, 0],
        "top1_tuned": idx_b[:, 0],
        "rank_in_base_of_top1_tuned": rank_top1_b,
        "rank_in_tuned_of_top1_base": rank_top1_a,
        "prob_base_of_top1_tuned": (a_at_top1_b - lse_a).exp(),
        **overlap,
        "js_top_p": js_p.clamp(0.0, LN2),
    }
