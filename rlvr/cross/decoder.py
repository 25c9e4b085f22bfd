"""Budgeted cross-sampling: a lock-step two-model decoder with online switch rules.

A *primary* and an *intervention* model decode one shared, mixed response per row. Each keeps its
own KV cache (`sampler.CachedDecoder`); at every step both next-token distributions are
computed on the current mixed prefix, a switch rule decides which model the token is drawn from,
and the chosen token is appended to both caches. So a step costs one cached forward per model.

Both models draw from the same per-row uniform stream (`sampling_uniforms(seed, key)`), so a rule
that never switches reproduces `sampler.sample` from the primary token for token, and one
that always switches reproduces the intervention model's own samples (same seed, same keys).

Rules (all evaluated online on the untempered full-vocabulary distributions, float32 log-softmax):

- `js`: switch when JS(primary, intervention) > threshold (the study's rule; threshold >= ln 2
  never switches, a negative one always does);
- `entropy_primary` / `entropy_intervention`: switch when that model's entropy (nats) >
  threshold (which of them is the base model depends on the direction: `rlvr.cross.sweep`);
- `delta`: switch when |log pi_int(a) - log pi_prim(a)| > threshold, a = the primary's top token;
- `random`: switch with probability `threshold` (a rate in [0, 1]), or a per-row rate, at every
  step, independently, using a second keyed stream (`sampling_uniforms(seed, key + "/switch")`)
  so token sampling is undisturbed and nested rates give nested switch sets.

Temperature and top-p shape only the sampling of the chosen model; the rules and the recorded
divergences use the full distributions, so the recorded JS is the scorer's teacher-forced JS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from rlvr.generation.sampler import (
    CachedDecoder,
    SamplingParams,
    left_pad,
    pick_tokens,
    sampling_uniforms,
)
from rlvr.progress import Progress
from rlvr.tokens.divergence import entropy, js

# rule -> the `step_signals` entry it thresholds (random thresholds its own uniforms)
SIGNALS = {"js": "js", "entropy_primary": "entropy_primary",
           "entropy_intervention": "entropy_intervention", "delta": "delta_top"}
RULES = (*SIGNALS, "random")
SWITCH_STREAM = "/switch"  # suffix of the random rule's stream key: independent of token sampling


@dataclass(frozen=True)
class SwitchRule:
    """Which signal decides a switch, and its threshold (a rate for `random`)."""

    name: str
    threshold: float

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise ValueError(f"unknown switch rule {self.name!r}; use one of {RULES}")
        if self.name == "random" and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"random rule: the threshold is a switch rate in [0, 1], "
                             f"got {self.threshold}")


@dataclass(frozen=True)
class CrossGeneration:
    """One mixed response and what each step saw; per-token lists align with `response_ids`."""

    prompt_ids: list[int]
    response_ids: list[int]  # includes the EOS token when a model stopped
    switched: list[bool]  # True where the token was drawn from the intervention model
    js: list[float]  # JS(primary, intervention) at the step, nats
    entropy_primary: list[float]
    entropy_intervention: list[float]
    logprob_primary: list[float]  # log-prob of the chosen token under each model (untempered)
    logprob_intervention: list[float]
    delta_top: list[float]  # |log pi_int(a) - log pi_prim(a)|, a = the primary's top token
    finish_reason: str  # "eos" or "length"


def switch_mask(
    rule: SwitchRule,
    signals: dict[str, torch.Tensor],
    switch_uniforms: torch.Tensor,
    rates: torch.Tensor | None = None,
) -> torch.Tensor:
    """The rule's decision per row; True = draw from the intervention model.

    signals: `step_signals` entries, (B,) each; switch_uniforms: (B,) the random rule's draws;
    rates: optional (B,) per-row rates of the random rule (else `rule.threshold` for every row).
    Returns bool (B,): signal > threshold, or for `random` u < rate.
    """
    if rule.name == "random":
        return switch_uniforms < (rule.threshold if rates is None else rates)
    return signals[SIGNALS[rule.name]] > rule.threshold


def step_signals(
    logits_primary: torch.Tensor, logits_intervention: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Both log-prob rows and the per-row signals of one step.

    logits_*: (B, V) float32. Returns logp_* (B, V) and js, entropy_*, delta_top (B,).
    """
    lp_p = torch.log_softmax(logits_primary.float(), -1)
    lp_i = torch.log_softmax(logits_intervention.float(), -1)
    top = lp_p.argmax(-1, keepdim=True)
    return {
        "logp_primary": lp_p,
        "logp_intervention": lp_i,
        "js": js(lp_p, lp_i),
        "entropy_primary": entropy(lp_p),
        "entropy_intervention": entropy(lp_i),
        "delta_top": (lp_i.gather(-1, top) - lp_p.gather(-1, top)).squeeze(-1).abs(),
    }


def _check_pair(primary: PreTrainedModel, intervention: PreTrainedModel) -> None:
    vp, vi = primary.config.vocab_size, intervention.config.vocab_size
    if vp != vi:
        raise ValueError(f"cross-sampling needs one vocabulary: primary has {vp} tokens, "
                         f"intervention {vi}; pick two models of the same family")


@torch.no_grad()
def cross_sample(
    primary: PreTrainedModel,
    intervention: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    keys: Sequence[str],
    rule: SwitchRule,
    params: SamplingParams,
    eos_id: int,
    pad_id: int,
    batch_size: int = 256,
    progress: bool = False,
    rates: Sequence[float] | None = None,
) -> list[CrossGeneration]:
    """Decode one mixed response per prompt row; `keys` name each row's random streams.

    `rates` (random rule only): one switch rate per row instead of `rule.threshold`.
    Returns generations in input order. A batch stops when every row hit EOS or the limit.
    """
    assert len(prompts) == len(keys), "one key per prompt row"
    if rates is not None:
        assert rule.name == "random" and len(rates) == len(prompts), "one rate per random row"
        assert all(0.0 <= r <= 1.0 for r in rates), "rates are probabilities"
    _check_pair(primary, intervention)
    results: list[CrossGeneration] = []
    starts = range(0, len(prompts), batch_size)
    for start in Progress(starts, f"cross {rule.name}", len(starts), "batch", progress):
        rows = prompts[start : start + batch_size]
        row_keys = keys[start : start + batch_size]
        row_rates = None if rates is None else rates[start : start + batch_size]
        results += _decode_batch(primary, intervention, rows, row_keys, rule, params, eos_id,
                                 pad_id, row_rates)
    return results


def _decode_batch(
    primary: PreTrainedModel,
    intervention: PreTrainedModel,
    rows: Sequence[Sequence[int]],
    keys: Sequence[str],
    rule: SwitchRule,
    params: SamplingParams,
    eos_id: int,
    pad_id: int,
    rates: Sequence[float] | None,
) -> list[CrossGeneration]:
    n_steps = params.max_new_tokens
    u = sampling_uniforms(params.seed, keys, n_steps)
    u_switch = (sampling_uniforms(params.seed, [k + SWITCH_STREAM for k in keys], n_steps)
                if rule.name == "random" else torch.zeros(len(rows), n_steps, dtype=torch.float64))
    dec_p, dec_i = CachedDecoder(primary), CachedDecoder(intervention)
    batch = left_pad(rows, pad_id)
    logits_p, logits_i = dec_p.prefill(*batch), dec_i.prefill(*batch)
    assert logits_p.device == logits_i.device, "put both models on one device"
    u_switch = u_switch.to(logits_p.device)
    row_rates = None if rates is None else torch.tensor(rates, dtype=torch.float64,
                                                        device=logits_p.device)
    done = torch.zeros(len(rows), dtype=torch.bool, device=logits_p.device)
    fields = ("switched", "js", "entropy_primary", "entropy_intervention", "logprob_primary",
              "logprob_intervention", "delta_top")
    steps: dict[str, list[torch.Tensor]] = {name: [] for name in ("tokens", *fields)}
    for t in range(n_steps):
        sig = step_signals(logits_p, logits_i)
        switch = switch_mask(rule, sig, u_switch[:, t], row_rates) & ~done
        # row-wise choice of logits: a row that does not switch sees exactly the primary's logits
        chosen = torch.where(switch.unsqueeze(-1), logits_i, logits_p)
        tok = pick_tokens(chosen, u[:, t], params.temperature, params.top_p)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        idx = tok.unsqueeze(-1)
        steps["tokens"].append(tok)
        steps["switched"].append(switch)
        steps["logprob_primary"].append(sig["logp_primary"].gather(-1, idx).squeeze(-1))
        steps["logprob_intervention"].append(sig["logp_intervention"].gather(-1, idx).squeeze(-1))
        for name in ("js", "entropy_primary", "entropy_intervention", "delta_top"):
            steps[name].append(sig[name])
        done = done | (tok == eos_id)
        if bool(done.all()) or t == n_steps - 1:
            break
        logits_p, logits_i = dec_p.step(tok), dec_i.step(tok)
    cols = {name: torch.stack(values, 1).tolist() for name, values in steps.items()}
    out = []
    for i, row in enumerate(rows):
        toks = cols["tokens"][i]
        n = toks.index(eos_id) + 1 if eos_id in toks else len(toks)
        out.append(CrossGeneration(
            prompt_ids=list(row), response_ids=toks[:n],
            finish_reason="eos" if toks[n - 1] == eos_id else "length",
            **{name: cols[name][i][:n] for name in fields},
        ))
    return out
