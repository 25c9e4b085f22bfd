"""Exact per-position divergence math between two next-token distributions.

Inputs are float32 log-probabilities over the full vocabulary (rows = positions). Everything is
computed in log-space so `-inf` entries (tokens a model rules out) and near one-hot rows stay
exact; natural log throughout, so 0 <= JS <= ln 2. The scorer's streamed, chunked version of
these (and of ranks, top-k overlaps and top-p JS) for a pair of models is `rlvr.tokens.pairstats`.
"""

from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)


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
