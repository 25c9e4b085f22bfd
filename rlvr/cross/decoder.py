"""Budgeted cross-sampling: a lock-step two-model decoder with online switch rules.

A *primary* and an *intervention* model decode one shared, mixed response per row. Each keeps its
own KV cache (`sampler.CachedDecoder`); at every step both next-token distributions are
computed on the current mixed prefix, a switch rule decides whether the token comes from the
primary or from the *switch distribution* (`Mixing`: the intervention model, an extrapolated
blend of both, or the companion study's top-K shortcut of either; `rlvr.cross.mixing`), and the
chosen token is appended to both caches. So a step costs one cached forward per model.

Both models draw from the same per-row uniform stream (`sampling_uniforms(seed, key)`): the
primary's *candidate* token is its draw with the step's uniform, a switched step draws from the
switch distribution with the same uniform. So a rule that never switches reproduces
`sampler.sample` from the primary token for token, and one that always switches to the
intervention model reproduces that model's own samples (same seed, same keys).

Rules (all evaluated online on the untempered full-vocabulary distributions, float32 log-softmax;
each switches when its signal > threshold):

- `js`: JS(primary, intervention) (the study's rule; threshold >= ln 2 never switches, a negative
  one always does);
- `entropy_primary` / `entropy_intervention`: that model's entropy (nats) (which of them is the
  base model depends on the direction: `rlvr.cross.sweep`);
- `delta`: |log pi_int(a) - log pi_prim(a)|, a = the primary's top token;
- `gap_sampled_pos` / `gap_sampled_neg`: the signed gap log pi_int(c) - log pi_prim(c) of the
  primary's candidate c, or its negative (the companion's `logp` / `neg_logp` gates);
  `gap_top_pos` / `gap_top_neg`: the same for the primary's top token;
- `kl_pi`, `kl_ip`: KL(primary‖intervention), KL(intervention‖primary); `kl_sym`: their mean;
  `kl_sym_topk`: the companion's "js" gate, ½(KL + reverse KL) on the primary's top-K tokens;
- `early`: minus the position, so threshold -N switches the first N tokens of every response;
- `random`: switch with probability `threshold` (a rate in [0, 1]), or a per-row rate, at every
  step, independently, using a second keyed stream (`sampling_uniforms(seed, key + "/switch")`)
  so token sampling is undisturbed and nested rates give nested switch sets.

Temperature and top-p shape only the sampling (after mixing); the rules and the recorded
divergences use the full distributions, so the recorded JS is the scorer's teacher-forced JS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from rlvr.cross.mixing import draw_probs, mix_logprobs, topk_kl_sym, topk_mix_logits
from rlvr.generation.sampler import (
    CachedDecoder,
    SamplingParams,
    left_pad,
    pick_tokens,
    sampling_uniforms,
)
from rlvr.progress import Progress
from rlvr.tokens.divergence import entropy, js, kl

# rule -> (the `step_signals` entry it thresholds, its sign); random thresholds its own uniforms
SIGNALS = {"js": ("js", 1), "entropy_primary": ("entropy_primary", 1),
           "entropy_intervention": ("entropy_intervention", 1), "delta": ("delta_top", 1),
           "gap_sampled_pos": ("gap_sampled", 1), "gap_sampled_neg": ("gap_sampled", -1),
           "gap_top_pos": ("gap_top", 1), "gap_top_neg": ("gap_top", -1),
           "kl_pi": ("kl_primary_intervention", 1), "kl_ip": ("kl_intervention_primary", 1),
           "kl_sym": ("kl_sym", 1),
           "kl_sym_topk": ("kl_sym_topk", 1), "early": ("position", -1)}
RULES = (*SIGNALS, "random")
SWITCH_STREAM = "/switch"  # suffix of the random rule's stream key: independent of token sampling
# per-step float records of a CrossGeneration, besides the chosen token's log-probs
STEP_FIELDS = ("js", "entropy_primary", "entropy_intervention", "delta_top", "gap_top",
               "kl_primary_intervention", "kl_intervention_primary", "kl_sym", "kl_sym_topk")


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
class Mixing:
    """The switch distribution ∝ exp((1 - w)·log pi_prim + w·log pi_int), w =
    `weight_intervention`: 1 = the intervention model (replacement), -α with the tuned model
    primary = extrapolation. `top_k` > 0: the companion's shortcut over the primary's top-K
    tokens (`rlvr.cross.mixing.topk_mix_logits`). `gate_k`: K of the `kl_sym_topk` signal."""

    weight_intervention: float = 1.0
    top_k: int = 0
    gate_k: int = 50

    def __post_init__(self) -> None:
        if self.top_k < 0 or self.gate_k < 1:
            raise ValueError(f"top_k must be >= 0 and gate_k >= 1, got {self.top_k}, "
                             f"{self.gate_k}")


REPLACE = Mixing()


@dataclass(frozen=True)
class CrossGeneration:
    """One mixed response and what each step saw; per-token lists align with `response_ids`."""

    prompt_ids: list[int]
    response_ids: list[int]  # includes the EOS token when a model stopped
    switched: list[bool]  # True where the token was drawn from the switch distribution
    js: list[float]  # JS(primary, intervention) at the step, nats
    entropy_primary: list[float]
    entropy_intervention: list[float]
    logprob_primary: list[float]  # log-prob of the chosen token under each model (untempered)
    logprob_intervention: list[float]
    delta_top: list[float]  # |log pi_int(a) - log pi_prim(a)|, a = the primary's top token
    gap_top: list[float]  # log pi_int(a) - log pi_prim(a), signed
    gap_sampled: list[float]  # the same for the primary's candidate (its draw at the step)
    kl_primary_intervention: list[float]  # KL(primary‖intervention), nats
    kl_intervention_primary: list[float]  # KL(intervention‖primary)
    kl_sym: list[float]  # their mean
    kl_sym_topk: list[float]  # the companion's gate on the primary's top-K tokens
    # top-K mixing only, at switched steps (else None): total variation between the exact and
    # the top-K switch distributions (after temperature and top-p), and whether the two draws
    # with the step's uniform differ
    mix_tv: list[float | None]
    mix_differs: list[bool | None]
    finish_reason: str  # "eos" or "length"


def switch_mask(
    rule: SwitchRule,
    signals: dict[str, torch.Tensor],
    switch_uniforms: torch.Tensor,
    rates: torch.Tensor | None = None,
) -> torch.Tensor:
    """The rule's decision per row; True = draw from the switch distribution.

    signals: `step_signals` entries (plus `gap_sampled` and `position`), (B,) each;
    switch_uniforms: (B,) the random rule's draws; rates: optional (B,) per-row rates of the
    random rule (else `rule.threshold` for every row).
    Returns bool (B,): sign x signal > threshold, or for `random` u < rate.
    """
    if rule.name == "random":
        return switch_uniforms < (rule.threshold if rates is None else rates)
    name, sign = SIGNALS[rule.name]
    return sign * signals[name] > rule.threshold


def step_signals(
    logits_primary: torch.Tensor, logits_intervention: torch.Tensor, gate_k: int = 50
) -> dict[str, torch.Tensor]:
    """Both log-prob rows and the per-row signals of one step.

    logits_*: (B, V) float32. Returns logp_* (B, V) and js, entropy_*, delta_top, gap_top,
    kl_primary_intervention, kl_intervention_primary, kl_sym, kl_sym_topk (B,).
    """
    lp_p = torch.log_softmax(logits_primary.float(), -1)
    lp_i = torch.log_softmax(logits_intervention.float(), -1)
    top = lp_p.argmax(-1, keepdim=True)
    gap_top = (lp_i.gather(-1, top) - lp_p.gather(-1, top)).squeeze(-1)
    kl_pi, kl_ip = kl(lp_p, lp_i), kl(lp_i, lp_p)
    return {
        "logp_primary": lp_p,
        "logp_intervention": lp_i,
        "js": js(lp_p, lp_i),
        "entropy_primary": entropy(lp_p),
        "entropy_intervention": entropy(lp_i),
        "delta_top": gap_top.abs(),
        "gap_top": gap_top,
        "kl_primary_intervention": kl_pi,
        "kl_intervention_primary": kl_ip,
        "kl_sym": 0.5 * (kl_pi + kl_ip),
        "kl_sym_topk": topk_kl_sym(lp_p, lp_i, gate_k),
    }


def switch_draw(
    logits_primary: torch.Tensor, logits_intervention: torch.Tensor, lp_p: torch.Tensor,
    lp_i: torch.Tensor, uniforms: torch.Tensor, mixing: Mixing, params: SamplingParams,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Tokens drawn from the switch distribution of some rows, and for top-K mixing the TV
    distance to the exact one and whether the exact draw differs (else None).

    logits_* and lp_* (the rows' raw logits and float32 log-softmax): (S, V); uniforms: (S,).
    Replacement samples the intervention's own logits, so it equals that model sampling alone.
    """
    w = mixing.weight_intervention
    exact = logits_intervention if w == 1.0 else mix_logprobs(lp_p, lp_i, w)
    t, p = params.temperature, params.top_p
    if not mixing.top_k:
        return pick_tokens(exact, uniforms, t, p), None, None
    short = topk_mix_logits(lp_p, lp_i, w, mixing.top_k)
    tokens = pick_tokens(short, uniforms, t, p)
    tv = 0.5 * (draw_probs(exact, t, p) - draw_probs(short, t, p)).abs().sum(-1)
    return tokens, tv, tokens != pick_tokens(exact, uniforms, t, p)


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
    mixing: Mixing = REPLACE,
) -> list[CrossGeneration]:
    """Decode one mixed response per prompt row; `keys` name each row's random streams.

    `rates` (random rule only): one switch rate per row instead of `rule.threshold`.
    `mixing`: what a switched step draws from (default: the intervention model).
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
                                 pad_id, row_rates, mixing)
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
    mixing: Mixing,
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
    nan = torch.full((len(rows),), float("nan"), device=logits_p.device)
    steps: dict[str, list[torch.Tensor]] = {name: [] for name in (
        "tokens", "switched", "logprob_primary", "logprob_intervention", "gap_sampled",
        "mix_tv", "mix_differs", *STEP_FIELDS)}
    for t in range(n_steps):
        sig = step_signals(logits_p, logits_i, mixing.gate_k)
        lp_p, lp_i = sig["logp_primary"], sig["logp_intervention"]
        candidate = pick_tokens(logits_p, u[:, t], params.temperature, params.top_p)
        cand = candidate.unsqueeze(-1)
        sig["gap_sampled"] = (lp_i.gather(-1, cand) - lp_p.gather(-1, cand)).squeeze(-1)
        sig["position"] = torch.full_like(sig["js"], float(t))
        switch = switch_mask(rule, sig, u_switch[:, t], row_rates) & ~done
        tok, tv, differs = candidate.clone(), nan.clone(), torch.zeros_like(done)
        if bool(switch.any()):  # only switched rows pay for the switch distribution
            drawn, row_tv, row_differs = switch_draw(
                logits_p[switch], logits_i[switch], lp_p[switch], lp_i[switch], u[switch, t],
                mixing, params)
            tok[switch] = drawn
            if row_tv is not None:
                tv[switch], differs[switch] = row_tv.to(tv.dtype), row_differs
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        idx = tok.unsqueeze(-1)
        steps["tokens"].append(tok)
        steps["switched"].append(switch)
        steps["logprob_primary"].append(lp_p.gather(-1, idx).squeeze(-1))
        steps["logprob_intervention"].append(lp_i.gather(-1, idx).squeeze(-1))
        steps["mix_tv"].append(tv)
        steps["mix_differs"].append(differs)
        for name in (*STEP_FIELDS, "gap_sampled"):
            steps[name].append(sig[name])
        done = done | (tok == eos_id)
        if bool(done.all()) or t == n_steps - 1:
            break
        logits_p, logits_i = dec_p.step(tok), dec_i.step(tok)
    cols = {name: torch.stack(values, 1).tolist() for name, values in steps.items()}
    fields = [n for n in steps if n not in ("tokens", "mix_tv", "mix_differs")]
    out = []
    for i, row in enumerate(rows):
        toks = cols["tokens"][i]
        n = toks.index(eos_id) + 1 if eos_id in toks else len(toks)
        switched = cols["switched"][i][:n]
        topk = mixing.top_k > 0
        out.append(CrossGeneration(
            prompt_ids=list(row), response_ids=toks[:n],
            finish_reason="eos" if toks[n - 1] == eos_id else "length",
            mix_tv=[v if s and topk else None
                    for v, s in zip(cols["mix_tv"][i][:n], switched, strict=True)],
            mix_differs=[v if s and topk else None
                         for v, s in zip(cols["mix_differs"][i][:n], switched, strict=True)],
            **{name: cols[name][i][:n] for name in fields},
        ))
    return out
