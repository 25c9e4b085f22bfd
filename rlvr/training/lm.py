"""Next-token training: a family's base pretraining, and the SFT and RFT controls.

All three use `train_lm`. Pretraining puts the loss on every token (the toy's prompt digits are
random, so their loss is a constant floor and does no harm); SFT and RFT mask the prompt and
learn only the response, like any instruction tuning.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.config import require
from rlvr.generation.sampler import SamplingParams, sample
from rlvr.progress import Progress
from rlvr.testbed.prompts import PromptRecord, encode_prompts

IGNORE = -100  # label value that cross_entropy skips


@dataclass(frozen=True)
class Example:
    """One training sequence: `<bos> prompt response <eos>` as ids, and the prompt's length."""

    ids: list[int]
    n_prompt: int  # leading tokens (bos + prompt) left out of the loss when prompts are masked


@dataclass(frozen=True)
class LMParams:
    """How `train_lm` optimises: AdamW, linear warmup, cosine decay to 10% of `lr`."""

    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 50  # loss-curve rows every this many steps
    threads: int = 1  # torch threads (a param: float results depend on the count)

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "log_every", "threads"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")
        require(self.lr > 0, "lr", f"must be positive, got {self.lr}", "use e.g. 3e-3")
        require(0 <= self.warmup_steps < self.steps, "warmup_steps",
                f"must be in [0, steps={self.steps})", "use a small fraction of steps")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0", "use 0 or 0.01")
        require(self.grad_clip > 0, "grad_clip", "must be positive", "use 1.0")


@dataclass(frozen=True)
class PretrainParams(LMParams):
    """`pretrain`: next-token training of the base model on the task corpus (loss on all tokens)."""

    steps: int = 1000  # a 1500-step run's loss: 0.324 at 1000, 0.319 at 1500

    corpus_copies: int = 4  # corpus responses per train problem, each with fresh styles and slips

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.corpus_copies >= 1, "corpus_copies", "must be >= 1", "use e.g. 4")


@dataclass(frozen=True)
class SFTParams(LMParams):
    """`sft`: the family's controls from the same base, e.g. `sft` on written solutions and
    `rft` on the base's own correct samples (loss on response tokens only)."""

    # toy family: sft's solutions (rlvr.testbed.grammars.SFT_STYLES), slip-free and graded:
    # `reverse` = running totals from the last digit with every step checked, a style the
    # pretraining corpus never holds; `reference` = the base's own preferred method (chain)
    data: Literal["reverse", "reference"] = "reverse"
    steps: int = 160  # = rl.steps x rl.minibatches x rl.epochs: a comparable number of updates
    lr: float = 1e-3
    warmup_steps: int = 0
    log_every: int = 10
    rft_prompts: int = 1024  # train prompts the base samples for rft
    rft_samples: int = 4  # samples per prompt (temperature 1); the correct ones are the rft data
    max_new_tokens: int = 64  # the steps testbed's responses run to ~60 tokens
    trainable_layers: int = 0  # train only the last N decoder layers + final norm; 0: all

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.trainable_layers >= 0, "trainable_layers", "must be >= 0",
                "use 0 (every parameter) or rl.trainable_layers")
        for key in ("rft_prompts", "rft_samples", "max_new_tokens"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")


def encode_examples(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], responses: Sequence[str]
) -> list[Example]:
    """Tokenise prompt/response pairs as the sampler sees them: bos, prompt, response, eos."""
    assert len(prompts) == len(responses), "one response per prompt"
    prompt_ids = tokenizer(list(prompts)).input_ids
    response_ids = tokenizer(list(responses), add_special_tokens=False).input_ids
    eos = tokenizer.eos_token_id
    return [Example(p + r + [eos], len(p)) for p, r in zip(prompt_ids, response_ids, strict=True)]


def collate(
    examples: Sequence[Example], pad_id: int, mask_prompt: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad a batch. Returns input_ids, attention_mask and labels, each (B, L) long.

    Labels are the ids with padding (and the prompt, if `mask_prompt`) set to IGNORE.
    """
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE)
    for i, e in enumerate(examples):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        attn[i, :n] = 1
        start = e.n_prompt if mask_prompt else 1  # the bos token is never predicted
        labels[i, start:n] = ids[i, start:n]
    return ids, attn, labels


def lm_loss(
    model: PreTrainedModel, ids: torch.Tensor, attn: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Token-mean next-token cross-entropy over the labelled positions (scalar)."""
    logits = model(input_ids=ids, attention_mask=attn).logits
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE,
    )


def lr_at(step: int, params: LMParams) -> float:
    """Learning rate at optimiser step `step` (0-based): warmup, then cosine to 10% of lr."""
    if step < params.warmup_steps:
        return params.lr * (step + 1) / params.warmup_steps
    span = max(1, params.steps - params.warmup_steps)
    progress = (step - params.warmup_steps) / span
    return params.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_lm(
    model: PreTrainedModel,
    examples: Sequence[Example],
    params: LMParams,
    pad_id: int,
    mask_prompt: bool,
    progress: bool = False,
    desc: str = "train",
) -> list[dict[str, float]]:
    """Train `model` in place on `examples` for `params.steps` updates; returns the loss curve.

    Batches are drawn by reshuffling the examples each epoch (seeded). Each curve row holds the
    step, the mean loss since the previous row, the learning rate and elapsed seconds.
    """
    assert examples, "no training examples"
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    rng = random.Random(params.seed)
    order: list[int] = []
    curve, window, start = [], [], time.perf_counter()
    steps = Progress(range(params.steps), desc, params.steps, "step", progress)
    for step in steps:
        if len(order) < params.batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        batch = [examples[i] for i in order[: params.batch_size]]
        del order[: params.batch_size]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, params)
        loss = lm_loss(model, *collate(batch, pad_id, mask_prompt))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        opt.step()
        window.append(loss.item())
        if (step + 1) % params.log_every == 0 or step + 1 == params.steps:
            mean = sum(window) / len(window)
            curve.append({"step": step + 1, "loss": mean, "lr": lr_at(step, params),
                          "seconds": time.perf_counter() - start})
            steps.note(loss=f"{mean:.3f}")
            window = []
    model.eval()
    return curve


def solution_examples(
    tokenizer: PreTrainedTokenizerBase, records: Sequence[PromptRecord], solutions: Sequence[str],
    chat_template: bool = True,
) -> list[Example]:
    """SFT data: each prompt as the sampler encodes it (`encode_prompts`), its written
    solution, then eos."""
    assert len(records) == len(solutions), "one solution per prompt"
    prompts = encode_prompts(records, tokenizer, chat_template)
    answers = tokenizer(list(solutions), add_special_tokens=False).input_ids
    eos = tokenizer.eos_token_id
    return [Example(p + a + [eos], len(p)) for p, a in zip(prompts, answers, strict=True)]


def self_correct_examples(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[PromptRecord],
    n_samples: int,
    sampling: SamplingParams,
    grade: Callable[[str, str], int],
    chat_template: bool = True,
    progress: bool = False,
) -> tuple[list[Example], float]:
    """RFT data: `n_samples` of the model's own responses per prompt, keeping the correct ones
    (ended by eos, graded 1 by `grade`).

    Returns the kept examples (the sampled ids, exactly) and the share of samples that were kept.
    """
    prompt_ids = encode_prompts(records, tokenizer, chat_template)
    rows = [ids for ids in prompt_ids for _ in range(n_samples)]
    keys = [f"rft/{r.prompt_id}/{j}" for r in records for j in range(n_samples)]
    gens = sample(model, rows, keys, sampling, tokenizer.eos_token_id, tokenizer.pad_token_id,
                  progress=progress)
    kept = []
    for i, gen in enumerate(gens):
        text = tokenizer.decode(gen.response_ids, skip_special_tokens=True)
        if gen.finish_reason == "eos" and grade(text, records[i // n_samples].answer):
            kept.append(Example(gen.prompt_ids + gen.response_ids, len(gen.prompt_ids)))
    return kept, len(kept) / max(1, len(gens))
