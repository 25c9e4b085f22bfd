"""What a switched step draws from: exact two-model mixtures and the companion's top-K shortcut.

A switched step of the cross-sampler draws from the distribution ∝ exp(w_p·log π_p + w_i·log π_i)
with w_p = 1 - w_i (π_p the primary, π_i the intervention model):

- w_i = 1: the intervention model itself (the study's replacement);
- w_i = -α with the tuned model primary: selective extrapolation, ∝ exp((1+α) log π_tuned -
  α log π_base) (the companion study's blend, here over the full vocabulary).

`mix_logprobs` computes it exactly over the vocabulary in float64. Tokens a model rules out
(-inf): a model with positive weight excludes them; where a model with negative weight rules out a
token the other allows, the density is unbounded, and we take the limit π(v) -> 0 shared by those
tokens: the row's mass goes to them, ∝ the allowing model's probability^(its weight).

`topk_mix_logits` is the companion's shortcut (RLVR-Directions `weighted_sampling`): only the
primary's top-K tokens are candidates, the other model's values on them are its log-probs where
they are in its own top K and its lowest top-K value elsewhere, and the weighted sum is
renormalised over the K candidates. `topk_kl_sym` is its "js" gate, ½(KL + reverse KL) over the
same renormalised top-K supports. Temperature and top-p apply after mixing (`draw_probs`, the
distribution `rlvr.generation.sampler.pick_tokens` samples from).
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def mix_logprobs(logp_primary: torch.Tensor, logp_intervention: torch.Tensor,
                 weight_intervention: float) -> torch.Tensor:
    """Normalised log-probs ∝ exp((1 - w)·logp_primary + w·logp_intervention), float64.

    logp_*: (B, V) log-probs (or logits: each row is renormalised). w = 0 or 1 returns one
    model's log-probs exactly (a zero weight drops its term, -inf included). Returns (B, V).
    """
    terms = [(1.0 - weight_intervention, logp_primary), (weight_intervention, logp_intervention)]
    terms = [(w, lp.double()) for w, lp in terms if w != 0.0]
    if len(terms) == 1:
        return torch.log_softmax(terms[0][1], -1)
    (w_hi, hi), (w_lo, lo) = sorted(terms, key=lambda t: -t[0])  # w_hi > 0 (weights sum to 1)
    if w_lo > 0:  # a geometric mixture: -inf in either model excludes the token, no inf - inf
        return torch.log_softmax(w_hi * hi + w_lo * lo, -1)
    allowed = torch.isfinite(hi)
    unbounded = allowed & (lo == NEG_INF)  # ruled out by the negatively weighted model
    logits = torch.where(allowed & ~unbounded, w_hi * hi + w_lo * lo,
                         torch.full_like(hi, NEG_INF))
    rows = unbounded.any(-1)
    if bool(rows.any()):  # the limit: all mass on the unbounded tokens, ∝ exp(w_hi * hi)
        logits[rows] = torch.where(unbounded[rows], w_hi * hi[rows],
                                   torch.full_like(hi[rows], NEG_INF))
    return torch.log_softmax(logits, -1)


def top_k_mask(logp: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k highest ids per row under the project's tie rule (equal values: lowest id first),
    without a sort of the vocabulary.

    logp: (B, V). Returns a (B, V) bool mask with min(k, V) True per row, and the k-th highest
    value per row (B, 1) (the lowest value inside the mask).
    """
    k = min(k, logp.shape[-1])
    kth = torch.topk(logp, k, dim=-1).values[:, -1:]
    above, tied = logp > kth, logp == kth
    need = k - above.sum(-1, keepdim=True)
    return above | (tied & (tied.cumsum(-1) <= need)), kth


def top_k_ids(logp: torch.Tensor, k: int) -> torch.Tensor:
    """The ids of `top_k_mask`, ascending: (B, min(k, V)) long."""
    mask, _ = top_k_mask(logp, k)
    return mask.nonzero()[:, 1].view(len(logp), -1)


def _aligned(logp_other: torch.Tensor, support: torch.Tensor, k: int) -> torch.Tensor:
    """The other model's values on `support` (B, K): its log-prob where the id is in its own
    top k, else its lowest top-k value (what the companion pads missing tokens with)."""
    own, pad = top_k_mask(logp_other, k)
    values = logp_other.gather(-1, support)
    return torch.where(own.gather(-1, support), values, pad.expand_as(values))


def topk_mix_logits(logp_primary: torch.Tensor, logp_intervention: torch.Tensor,
                    weight_intervention: float, k: int) -> torch.Tensor:
    """The companion's mixture on the primary's top-k tokens, as (B, V) float64 log-probs
    (-inf off the support): ∝ exp((1 - w)·logp_primary + w·aligned intervention values)."""
    support = top_k_ids(logp_primary, k)
    mixed = mix_logprobs(logp_primary.gather(-1, support),
                         _aligned(logp_intervention, support, k), weight_intervention)
    out = torch.full(logp_primary.shape, NEG_INF, dtype=torch.float64, device=mixed.device)
    return out.scatter(-1, support, mixed)


def topk_kl_sym(logp_primary: torch.Tensor, logp_intervention: torch.Tensor, k: int
                ) -> torch.Tensor:
    """The companion's "js" gate: ½(KL(p‖i) + KL(i‖p)) with both models renormalised on the
    primary's top-k ids (the intervention's values aligned as in `topk_mix_logits`). (B,)."""
    support = top_k_ids(logp_primary, k)
    p = torch.log_softmax(logp_primary.gather(-1, support).double(), -1)
    q = torch.log_softmax(_aligned(logp_intervention, support, k).double(), -1)
    diff = torch.where(torch.isfinite(p) & torch.isfinite(q), p - q, torch.zeros_like(p))
    kl_pq = (p.exp() * diff).sum(-1)
    kl_qp = (q.exp() * -diff).sum(-1)
    return (0.5 * (kl_pq + kl_qp)).float()


def draw_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The distribution `pick_tokens` samples from: tempered, top-p truncated, renormalised.

    logits: (B, V). Returns (B, V) float64 (one-hot at the argmax for temperature 0).
    """
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).double()
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep = (sorted_probs.cumsum(-1) - sorted_probs) < top_p
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs * keep)
    return kept / kept.sum(-1, keepdim=True)
