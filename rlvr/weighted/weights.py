"""Divergence-weighted advantage: per-token weights for GRPO/DAPO (method.md §4).

Each response token's advantage is scaled by a detached weight

    Ã_{i,t} = w_{i,t} · Â_i,    w = 1 + s · (σ(α · D_{i,t}) − ½)  ∈ (1 − s/2, 1 + s/2)

where D is a per-token divergence. α > 0 boosts high-divergence tokens, α < 0 low-divergence ones;
s = 0 gives w ≡ 1, the unweighted trainer. A weight whose batch mean is above 1 also scales the
step size; `renormalize` divides the weights by their mean over a minibatch's response tokens,
so a renormalised variant only moves credit between tokens. Three choices of D:

- `k3_old`: k3 estimate of KL(π_old ‖ π_θ) on the sampled token, r = π_θ/π_old, k3 = r − 1 − log r
  (the study's choice; zero on the first inner step, when π_θ = π_old).
- `js_base`: exact full-vocabulary Jensen–Shannon divergence between π_θ and the frozen base model,
  computed with `divergence.js` on float32 log-softmax rows (the scorer's math), in [0, ln 2].
- `delta_base`: the signed log-prob gap log π_θ(y_t) − log π_base(y_t) of the sampled token.

Everything here takes plain tensors and returns plain tensors, so TRL or verl losses can call it
(see the README); `make_weight_hook` adapts it to this project's trainer (`rlvr.training.grpo`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from rlvr.tokens.divergence import js

DIVERGENCES = ("k3_old", "js_base", "delta_base")
REFERENCE_DIVERGENCES = ("js_base", "delta_base")  # need the frozen base model's outputs
JS_CHUNK_ROWS = 4096  # positions per chunk of the full-vocabulary JS: bounds memory at (chunk, V)


class _TokenBatch(Protocol):
    """The fields of `grpo.TokenContext` the weights read (kept structural on purpose)."""

    logprobs: torch.Tensor
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor | None
    logits: torch.Tensor
    ref_logits: torch.Tensor | None
    mask: torch.Tensor


def advantage_weights(
    divergence: torch.Tensor, mask: torch.Tensor, s: float, alpha: float
) -> torch.Tensor:
    """Detached weights w = 1 + s·(σ(α·D) − ½); 1 where `mask` is 0.

    divergence: (B, T) float (any values; masked positions may hold garbage such as NaN);
    mask: (B, T), nonzero on response tokens. Returns (B, T) float32 with no autograd graph.
    The band (1 − s/2, 1 + s/2) is open in exact arithmetic; in float32 σ rounds to 0 or 1 once
    |α·D| exceeds ~17, so saturated weights equal the band's ends.
    """
    if s < 0 or s >= 2:
        raise ValueError(f"weight scale s={s} must lie in [0, 2) so that weights stay positive")
    d = divergence.detach().float()
    w = 1.0 + s * (torch.sigmoid(alpha * d) - 0.5)
    return torch.where(mask.bool(), w, torch.ones_like(w))


def renormalize(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weights divided by their mean over the masked tokens (mean 1 there); 1 elsewhere.

    weights, mask: (B, T). Returns (B, T), detached; an all-masked batch is returned unchanged.
    """
    on = mask.bool()
    if not on.any():
        return weights
    w = weights.detach() / weights.detach()[on].mean()
    return torch.where(on, w, torch.ones_like(w))


def weight_advantages(advantages: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-token advantages Ã = w · Â: advantages (B,) and weights (B, T) -> (B, T)."""
    return weights * advantages.unsqueeze(-1)


def k3_old(logprobs: torch.Tensor, old_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 = r − 1 − log r with r = π_θ/π_old on the sampled token: (B, T) -> (B, T), >= 0.

    Uses expm1 so tiny log-ratios (the usual case) keep their precision.
    """
    log_r = (logprobs.detach() - old_logprobs.detach()).double()
    return (torch.expm1(log_r) - log_r).clamp(min=0.0).to(logprobs.dtype)


def js_base(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Exact JS(π_θ(·|prefix), π_base(·|prefix)) per position: logits (B, T, V) x2 -> (B, T).

    Rows are converted to float32 log-softmax and passed to `rlvr.tokens.divergence.js` in chunks of
    `JS_CHUNK_ROWS` positions, the same computation the scorer uses for a (base, RL) pair.
    """
    if logits.shape != ref_logits.shape:
        raise ValueError(f"policy logits {tuple(logits.shape)} and base logits "
                         f"{tuple(ref_logits.shape)} differ: both models must share a vocabulary")
    shape = logits.shape[:-1]
    p = logits.detach().reshape(-1, logits.shape[-1])
    q = ref_logits.detach().reshape(-1, ref_logits.shape[-1])
    out = torch.empty(p.shape[0], dtype=torch.float32, device=p.device)
    for start in range(0, p.shape[0], JS_CHUNK_ROWS):
        rows = slice(start, start + JS_CHUNK_ROWS)
        logp = torch.log_softmax(p[rows].float(), -1)
        out[rows] = js(logp, torch.log_softmax(q[rows].float(), -1))
    return out.reshape(shape)


def delta_base(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Signed gap log π_θ(y_t) − log π_base(y_t) of the sampled tokens: (B, T) -> (B, T)."""
    return logprobs.detach() - ref_logprobs.detach()


def token_divergence(name: str, batch: _TokenBatch) -> torch.Tensor:
    """Divergence `name` (one of `DIVERGENCES`) for every token of a trainer batch: (B, T)."""
    if name == "k3_old":
        return k3_old(batch.logprobs, batch.old_logprobs)
    if name in REFERENCE_DIVERGENCES and (batch.ref_logprobs is None or batch.ref_logits is None):
        raise ValueError(f"divergence {name!r} needs the frozen base model: train with "
                         "GRPOParams(track_kl=True)")
    if name == "js_base":
        assert batch.ref_logits is not None
        return js_base(batch.logits, batch.ref_logits)
    if name == "delta_base":
        assert batch.ref_logprobs is not None
        return delta_base(batch.logprobs, batch.ref_logprobs)
    raise ValueError(f"unknown divergence {name!r}; use one of {DIVERGENCES}")


def needs_reference(divergence: str) -> bool:
    """True when `divergence` reads the frozen base model (the trainer must compute it)."""
    return divergence in REFERENCE_DIVERGENCES


def make_weight_hook(
    divergence: str, s: float, alpha: float, normalize: bool = False
) -> Callable[[_TokenBatch], torch.Tensor]:
    """A trainer weight hook: batch -> detached (B, T) weights from `divergence`, s and α
    (divided by their minibatch mean when `normalize`)."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; use one of {DIVERGENCES}")
    advantage_weights(torch.zeros(1, 1), torch.ones(1, 1), s, alpha)  # validate s up front

    def hook(batch: _TokenBatch) -> torch.Tensor:
        w = advantage_weights(token_divergence(divergence, batch), batch.mask, s, alpha)
        return renormalize(w, batch.mask) if normalize else w

    return hook
