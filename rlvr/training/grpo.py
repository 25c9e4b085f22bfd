"""GRPO/DAPO with verifiable rewards, in plain torch.

One step: sample `group_size` responses for each of `prompts_per_step` prompts (temperature 1,
top-p 1), grade them, normalise rewards within each group, drop groups whose rewards are all
equal (dynamic sampling: they carry no signal), then take `epochs` x `minibatches` optimiser
steps on the clipped-ratio objective with separate low/high clips (clip-higher), token-mean
loss over all response tokens of a minibatch, and an optional k3 KL penalty to the frozen base.

A per-token weight hook scales each token's advantage (`Ã = w · Â`, weights detached); the
divergence-weighted variant plugs in there. The identity hook (None) gives plain DAPO.

The trainer knows no task: it takes prompt records (encoded as the sampler encodes them, chat
template included) and a grader, the same pair the sample stage uses, so the toy family and a
real chat model train through the same code. `trainable_layers` trains only the last decoder
layers (and the final norm): on a 135M-parameter model that halves a step's time and memory.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from rlvr.config import require
from rlvr.generation.sampler import Generation, SamplingParams, distinct_rows, left_pad, sample
from rlvr.models.loading import save_model
from rlvr.progress import Progress
from rlvr.store.atomic import atomic_dir
from rlvr.testbed.prompts import PromptRecord, encode_prompts

Grader = Callable[[str, str], int]

EPS = 1e-6  # added to the group std, so a near-constant group cannot blow up the advantages
CHECKPOINT_PREFIX = "rl_step_"


@dataclass
class TokenContext:
    """Per-token quantities of one minibatch, handed to the weight hook."""

    logprobs: torch.Tensor  # (B, T) log pi_theta of the sampled tokens (carries grad)
    old_logprobs: torch.Tensor  # (B, T) log pi_old, detached
    ref_logprobs: torch.Tensor | None  # (B, T) log pi_ref (frozen base), detached; None if no ref
    logits: torch.Tensor  # (B, T, V) current policy logits at those positions (carries grad)
    ref_logits: torch.Tensor | None  # (B, T, V) reference logits, detached
    mask: torch.Tensor  # (B, T) float, 1 on response tokens
    advantages: torch.Tensor  # (B,) group-normalised advantages


WeightHook = Callable[[TokenContext], torch.Tensor]  # returns detached (B, T) weights


@dataclass(frozen=True)
class GRPOParams:
    """`rl`: one GRPO/DAPO run's knobs (the weighted grid's `weighted.rl` too)."""

    steps: int = 80
    prompts_per_step: int = 32
    group_size: int = 8  # samples per prompt; advantages are normalised within the group
    max_new_tokens: int = 64  # the steps testbed's responses run to ~60 tokens
    lr: float = 1.5e-4  # with 8 updates per batch (3e-4 overshoots there; 1e-3 collapses)
    weight_decay: float = 0.0
    clip_low: float = 0.2  # ratio clipped to [1 - clip_low, 1 + clip_high] (DAPO clip-higher)
    clip_high: float = 0.28
    kl_coef: float = 0.0  # k3 KL penalty to the frozen base (DAPO: none)
    minibatches: int = 4  # optimiser steps per pass over a rollout batch
    epochs: int = 2  # passes over each rollout batch: 8 updates, 7 off-policy (k3 > 0, clips act)
    dynamic_sampling: bool = True  # drop groups whose rewards are all equal
    grad_clip: float = 1.0
    save_every: int = 20  # checkpoints rl_step_<N> every this many steps (and at the last)
    seed: int = 0
    track_kl: bool = True  # keep a frozen base copy to log KL to base (one more forward)
    trainable_layers: int = 0  # train only the last N decoder layers + final norm; 0: all
    # pi_old of the ratio: "recompute" (a forward after sampling) or "sampler" (the sampler's
    # own log-probs of its tokens, equal up to float rounding: one forward per step fewer)
    old_logprobs: Literal["recompute", "sampler"] = "recompute"
    # torch threads of the run: float results depend on the count, so it is a param (the rl
    # stage is one task; a weighted run shares the cores with `weighted.resources.workers`)
    threads: int = 1

    def __post_init__(self) -> None:
        require(self.group_size >= 2, "group_size", f"must be >= 2, got {self.group_size}",
                "group-normalised advantages need at least 2 samples per prompt; use e.g. 8")
        for key in ("steps", "prompts_per_step", "max_new_tokens", "minibatches", "epochs",
                    "save_every"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")
        require(self.lr > 0, "lr", f"must be positive, got {self.lr}", "use e.g. 3e-4")
        require(0 <= self.clip_low < 1, "clip_low", f"must be in [0, 1), got {self.clip_low}",
                "use 0.2")
        require(self.clip_high >= 0, "clip_high", f"must be >= 0, got {self.clip_high}",
                "use 0.28 (clip-higher) or 0.2")
        require(self.kl_coef >= 0, "kl_coef", f"must be >= 0, got {self.kl_coef}",
                "use 0 (DAPO) or a small value like 0.01")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0", "use 0")
        require(self.grad_clip > 0, "grad_clip", "must be positive", "use 1.0")
        require(self.minibatches <= self.prompts_per_step * self.group_size, "minibatches",
                "more minibatches than rollouts per step", "lower minibatches")
        require(self.trainable_layers >= 0, "trainable_layers", "must be >= 0",
                "use 0 (every parameter) or the number of last layers to train")
        require(self.threads >= 1, "threads", "must be >= 1", "use 1, or the cores to use")


def freeze_layers(model: PreTrainedModel, trainable_layers: int) -> int:
    """Leave only the last `trainable_layers` decoder layers and the final norm trainable (0:
    everything); returns the trainable parameter count. Frozen weights get no gradient, so
    AdamW keeps no state for them and the backward stops at the first trainable layer."""
    if trainable_layers:
        decoder = model.get_decoder()
        if trainable_layers > len(decoder.layers):
            raise ValueError(f"params.yaml `trainable_layers`: {trainable_layers} > the model's "
                             f"{len(decoder.layers)} layers; use at most that (0 = all)")
        model.requires_grad_(False)
        for module in [*decoder.layers[-trainable_layers:], decoder.norm]:
            module.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(R - mean) / (std + EPS) within each group; rewards (G, n) -> advantages (G, n).

    std is the population standard deviation (divide by n, not n - 1), so a group of n rewards
    with k ones gets advantages of magnitude independent of the unbiasing convention.
    """
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, correction=0)
    return (rewards - mean) / (std + EPS)


def informative_groups(rewards: torch.Tensor) -> torch.Tensor:
    """Dynamic sampling: (G,) bool, False for groups whose rewards are all equal."""
    return (rewards != rewards[:, :1]).any(dim=1)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi_theta || pi_ref): exp(d) - d - 1 with d = ref - logp."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float,
    clip_high: float,
    weights: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """Clipped-ratio policy loss, token-mean over the masked tokens (scalar).

    logprobs, old_logprobs, mask, weights, ref_logprobs: (B, T); advantages: (B,).
    Per token: -min(r·Ã, clip(r, 1 - clip_low, 1 + clip_high)·Ã) + kl_coef·k3, with
    r = exp(logp - old_logp) and Ã = w·Â (w = 1 without weights).
    """
    adv = advantages.unsqueeze(1) if weights is None else advantages.unsqueeze(1) * weights
    ratio = torch.exp(logprobs - old_logprobs)
    clipped = ratio.clamp(1 - clip_low, 1 + clip_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    if ref_logprobs is not None and kl_coef:
        per_token = per_token + kl_coef * k3_kl(logprobs, ref_logprobs)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


@dataclass
class RolloutBatch:
    """Padded prompt+response rows: prompts left-padded to width P, responses right-padded."""

    ids: torch.Tensor  # (B, P + T) long
    attn: torch.Tensor  # (B, P + T) long
    positions: torch.Tensor  # (B, P + T) long
    mask: torch.Tensor  # (B, T) float, 1 on response tokens
    prompt_width: int


def pack(gens: Sequence[Generation], pad_id: int) -> RolloutBatch:
    """Lay out generations so that every response starts at the same column."""
    p_ids, p_attn, _ = left_pad([g.prompt_ids for g in gens], pad_id)
    width = max(1, max(len(g.response_ids) for g in gens))
    r_ids = torch.full((len(gens), width), pad_id, dtype=torch.long)
    r_mask = torch.zeros((len(gens), width))
    for i, g in enumerate(gens):
        r_ids[i, : len(g.response_ids)] = torch.tensor(g.response_ids, dtype=torch.long)
        r_mask[i, : len(g.response_ids)] = 1.0
    attn = torch.cat([p_attn, r_mask.long()], dim=1)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    return RolloutBatch(torch.cat([p_ids, r_ids], 1), attn, positions, r_mask, p_ids.shape[1])


def response_logits(
    model: PreTrainedModel, batch: RolloutBatch, rows: torch.Tensor
) -> torch.Tensor:
    """Logits (B, T, V) predicting each response token of the selected rows.

    The rows of a group repeat one prompt: each distinct prompt runs once, its KV cache is
    expanded to its rows (gradients flow back through the expansion, summed over the rows as
    in one forward per row), and the responses run on it. A real model's prompt (system
    prompt, demonstration, question) is longer than its response, so this is most of the cost.
    """
    width = batch.prompt_width
    ids, attn, positions = batch.ids[rows], batch.attn[rows], batch.positions[rows]
    first, expand = distinct_rows(ids[:, :width], attn[:, :width])
    cache = DynamicCache()
    # the head runs only where it predicts a response token: at a 49k vocabulary the prompt
    # columns' logits would cost more memory than the whole minibatch's activations
    last = model(input_ids=ids[first, :width], attention_mask=attn[first, :width],
                 position_ids=positions[first, :width], cache=cache, use_cache=True,
                 logits_to_keep=1).logits
    cache.reorder_cache(expand)
    rest = model(input_ids=ids[:, width:], attention_mask=attn, position_ids=positions[:, width:],
                 cache=cache, use_cache=True).logits
    return torch.cat([last[expand], rest[:, :-1]], dim=1).float()


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits) at `tokens`: (B, T, V), (B, T) -> (B, T)."""
    return torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


UPDATE_KEYS = ("clip_frac", "clip_frac_low", "clip_frac_high", "ratio_std", "ratio_min",
               "ratio_max", "k3_old", "k3_old_later", "n_updates")


def update_stats(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
    mask: torch.Tensor, clip_low: float, clip_high: float,
) -> dict[str, torch.Tensor]:
    """The masked per-token ratio, k3 and active-clip flags of one minibatch update.

    logprobs, old_logprobs, mask: (B, T); advantages: (B,). The ratio is r = pi_theta/pi_old as
    the loss saw it. A clip is *active* where the clipped term wins the min, so the token's
    gradient is zero: low side r < 1 - clip_low with A < 0, high side r > 1 + clip_high with
    A > 0 (a token outside the band on the other side still gets its gradient). Returns 1-D
    tensors over the response tokens: ratio, k3 (= r - 1 - log r), low, high (bool).
    """
    on = mask.bool()
    log_r = (logprobs - old_logprobs).double()
    adv = advantages.unsqueeze(1).expand_as(log_r)
    ratio = log_r.exp()
    return {
        "ratio": ratio[on],
        "k3": (torch.expm1(log_r) - log_r).clamp(min=0.0)[on],
        "low": ((ratio < 1 - clip_low) & (adv < 0))[on],
        "high": ((ratio > 1 + clip_high) & (adv > 0))[on],
    }


def summarize_updates(updates: Sequence[dict[str, torch.Tensor]]) -> dict[str, float]:
    """One step's update statistics, pooled over the tokens of all its minibatch updates.

    clip_frac_low/high: share of tokens whose clip was active on that side (clip_frac: either);
    ratio_std/min/max: spread of r = pi_theta/pi_old; k3_old: mean k3 estimate of
    KL(pi_old || pi_theta) over every update, k3_old_later: over the updates after the step's
    first one (the first update is on-policy, r = 1 and k3 = 0 exactly); n_updates: optimiser
    steps taken. NaN where a step took no update (every group dropped).
    """
    nan = float("nan")
    if not updates:
        return {key: nan for key in UPDATE_KEYS} | {"n_updates": 0.0}
    cat = {key: torch.cat([u[key] for u in updates]) for key in updates[0]}
    later = [u["k3"] for u in updates[1:]]
    ratio = cat["ratio"]
    return {
        "clip_frac": float((cat["low"] | cat["high"]).double().mean()),
        "clip_frac_low": float(cat["low"].double().mean()),
        "clip_frac_high": float(cat["high"].double().mean()),
        "ratio_std": float(ratio.std()) if len(ratio) > 1 else 0.0,
        "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max()),
        "k3_old": float(cat["k3"].mean()),
        "k3_old_later": float(torch.cat(later).mean()) if later else nan,
        "n_updates": float(len(updates)),
    }


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    return float((x * mask).sum() / mask.sum().clamp(min=1))


@dataclass
class PolicyStats:
    """Sums of the policy's entropy and exact KL to the reference over response tokens."""

    entropy: float = 0.0
    kl: float = float("nan")  # nan without a reference
    tokens: float = 0.0

    def add(self, other: PolicyStats) -> None:
        self.kl = other.kl if self.tokens == 0 else self.kl + other.kl
        self.entropy += other.entropy
        self.tokens += other.tokens

    def means(self) -> dict[str, float]:
        n = self.tokens or float("nan")
        return {"entropy": self.entropy / n, "kl_base": self.kl / n}


def policy_stats(
    logits: torch.Tensor, ref_logits: torch.Tensor | None, mask: torch.Tensor
) -> PolicyStats:
    """Entropy and KL(pi || ref) sums over the masked positions; logits (B, T, V), mask (B, T)."""
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    kl = float("nan")
    if ref_logits is not None:
        kl = float(((p * (logp - torch.log_softmax(ref_logits, -1))).sum(-1) * mask).sum())
    return PolicyStats(float((-(p * logp).sum(-1) * mask).sum()), kl, float(mask.sum()))


def rollout(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[tuple[PromptRecord, list[int]]],
    grader: Grader,
    group_size: int,
    sampling: SamplingParams,
    tag: str,
) -> tuple[list[Generation], torch.Tensor]:
    """Sample `group_size` responses per (record, prompt ids); returns them and rewards (G, n)."""
    rows = [ids for _, ids in problems for _ in range(group_size)]
    keys = [f"{tag}/{r.prompt_id}/{j}" for r, _ in problems for j in range(group_size)]
    gens = sample(policy, rows, keys, sampling, tokenizer.eos_token_id, tokenizer.pad_token_id)
    texts = [tokenizer.decode(g.response_ids, skip_special_tokens=True) for g in gens]
    rewards = [grader(t, problems[i // group_size][0].answer) for i, t in enumerate(texts)]
    return gens, torch.tensor(rewards, dtype=torch.float32).view(len(problems), group_size)


def save_checkpoint(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path
) -> None:
    with atomic_dir(path) as tmp:
        save_model(model, tokenizer, tmp)


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete `rl_step_<N>` directory under `directory`, by step."""
    found = []
    for path in Path(directory).glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = path.name[len(CHECKPOINT_PREFIX):]
        if suffix.isdigit() and (path / "config.json").exists():
            found.append((int(suffix), path))
    return sorted(found)


def train_grpo(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[PromptRecord],
    grader: Grader,
    params: GRPOParams,
    weight_hook: WeightHook | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
    chat_template: bool = True,
) -> list[dict[str, float]]:
    """Train `policy` in place on `records` graded by `grader`; returns one log row per step.

    Prompts are encoded by `encode_prompts` (`chat_template` as the model spec says), exactly
    as the sample stage encodes them.

    Row keys: step, reward_mean, accuracy (share of rollouts graded right: equal to reward_mean
    while the reward is the 0/1 grade), entropy (mean policy entropy over response tokens),
    kl_base (exact KL(pi || base) per response token, nan without a reference), response_length,
    dropped_share (groups dropped by dynamic sampling), loss, the update statistics of
    `summarize_updates` (clip_frac, clip_frac_low, clip_frac_high, ratio_std, ratio_min,
    ratio_max, k3_old, k3_old_later, n_updates), seconds.

    A frozen copy of the initial policy is the reference (KL penalty, the `kl_base` log, and the
    hook's ref quantities); it is made when `kl_coef > 0` or `track_kl`. With a
    `checkpoint_dir`, `rl_step_<N>` is saved there every `save_every` steps and at the end.
    """
    ref = None
    if params.kl_coef > 0 or params.track_kl:
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
    freeze_layers(policy, params.trainable_layers)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    problems = list(zip(records, encode_prompts(records, tokenizer, chat_template), strict=True))
    rng = random.Random(params.seed)
    order: list[tuple[PromptRecord, list[int]]] = []
    pad = tokenizer.pad_token_id
    log, start = [], time.perf_counter()
    steps = Progress(range(1, params.steps + 1), "grpo", params.steps, "step", progress)
    for step in steps:
        if len(order) < params.prompts_per_step:
            fresh = list(problems)
            rng.shuffle(fresh)
            order += fresh
        chosen, order = order[: params.prompts_per_step], order[params.prompts_per_step :]
        sampling = SamplingParams(temperature=1.0, top_p=1.0,
                                  max_new_tokens=params.max_new_tokens, seed=params.seed)
        policy.eval()
        gens, rewards = rollout(policy, tokenizer, chosen, grader, params.group_size, sampling,
                                f"rl/{step}")
        keep = informative_groups(rewards) if params.dynamic_sampling else torch.ones(
            len(chosen), dtype=torch.bool)
        batch = pack(gens, pad)
        tokens = batch.ids[:, batch.prompt_width :]
        every = torch.arange(len(gens))
        row = {"step": step, "reward_mean": float(rewards.mean()),
               "accuracy": float(rewards.mean()),
               "response_length": float(batch.mask.sum(1).mean()),
               "dropped_share": 1.0 - float(keep.float().mean())}
        with torch.no_grad():
            ref_logits = None if ref is None else response_logits(ref, batch, every)
            ref_logp = None if ref_logits is None else token_logprobs(ref_logits, tokens)
            if params.old_logprobs == "recompute":
                old_logits = response_logits(policy, batch, every)
                old_logp = token_logprobs(old_logits, tokens)
                row.update(policy_stats(old_logits, ref_logits, batch.mask).means())
            else:  # the sampler's own log-probs: the same pi_old, one forward fewer
                old_logp = torch.zeros_like(batch.mask)
                for i, g in enumerate(gens):
                    old_logp[i, : len(g.logprobs)] = torch.tensor(g.logprobs)
        seen = PolicyStats()  # sampler mode: entropy and KL over the rows trained on
        adv = group_advantages(rewards).view(-1)
        rows = keep.repeat_interleave(params.group_size).nonzero().squeeze(1)
        losses, updates = [], []
        policy.train()
        for epoch in range(params.epochs if len(rows) else 0):
            perm = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(
                params.seed * 100003 + step))]
            for mb in perm.chunk(params.minibatches):
                logits = response_logits(policy, batch, mb)
                logp = token_logprobs(logits, tokens[mb])
                if params.old_logprobs == "sampler" and epoch == 0:
                    seen.add(policy_stats(logits.detach(), None if ref_logits is None
                                          else ref_logits[mb], batch.mask[mb]))
                ctx = TokenContext(
                    logprobs=logp, old_logprobs=old_logp[mb],
                    ref_logprobs=None if ref_logp is None else ref_logp[mb],
                    logits=logits, ref_logits=None if ref_logits is None else ref_logits[mb],
                    mask=batch.mask[mb], advantages=adv[mb],
                )
                weights = None if weight_hook is None else weight_hook(ctx).detach()
                loss = grpo_loss(logp, ctx.old_logprobs, ctx.advantages, ctx.mask,
                                 params.clip_low, params.clip_high, weights,
                                 ctx.ref_logprobs, params.kl_coef)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, params.grad_clip)
                opt.step()
                losses.append(loss.item())
                updates.append(update_stats(logp.detach(), ctx.old_logprobs, ctx.advantages,
                                            ctx.mask, params.clip_low, params.clip_high))
        policy.eval()
        if params.old_logprobs == "sampler":
            row.update(seen.means())
        row["loss"] = sum(losses) / len(losses) if losses else float("nan")
        row |= summarize_updates(updates)
        row["seconds"] = time.perf_counter() - start
        log.append(row)
        steps.note(reward=f"{row['reward_mean']:.2f}", drop=f"{row['dropped_share']:.2f}")
        if checkpoint_dir is not None and (step % params.save_every == 0 or step == params.steps):
            save_checkpoint(policy, tokenizer, Path(checkpoint_dir) / f"{CHECKPOINT_PREFIX}{step}")
    return log
