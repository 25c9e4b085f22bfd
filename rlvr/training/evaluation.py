"""Held-out accuracy of a model: n samples per eval prompt at temperature 1, graded 0/1.

Besides accuracy, the summary says how the model answers (method share, answer format, length),
which is what RL and SFT change on this task. The standard error treats prompts as the unit,
since the n samples of one prompt are correlated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.generation.accuracy import prompt_interval
from rlvr.generation.sampler import SamplingParams, sample
from rlvr.testbed.prompts import PromptRecord, encode_prompts
from rlvr.training.grpo import Grader


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[PromptRecord],
    grader: Grader,
    n_samples: int,
    sampling: SamplingParams,
    batch_size: int = 512,
    progress: bool = False,
    chat_template: bool = True,
) -> dict[str, float | int]:
    """Sample `n_samples` responses per problem, grade them with `grader`, summarise them.

    Returns accuracy (mean over all samples), n (samples), n_prompts, stderr and a 95% interval
    (normal approximation over per-prompt accuracies), pass_at_n, mean_length (response tokens,
    eos included), share_chain (responses opening with `chain`), share_check (second word
    `check`: the steps testbed's verification), share_eq_format (responses with
    `answer =`), share_truncated (hit the token limit).
    """
    prompt_ids = encode_prompts(problems, tokenizer, chat_template)
    rows = [ids for ids in prompt_ids for _ in range(n_samples)]
    keys = [f"eval/{p.prompt_id}/{j}" for p in problems for j in range(n_samples)]
    gens = sample(model, rows, keys, sampling, tokenizer.eos_token_id, tokenizer.pad_token_id,
                  batch_size=batch_size, progress=progress)
    texts = [tokenizer.decode(g.response_ids, skip_special_tokens=True) for g in gens]
    correct = np.array([grader(t, problems[i // n_samples].answer) for i, t in enumerate(texts)],
                       dtype=float).reshape(len(problems), n_samples)
    return {
        **prompt_interval(correct),
        "n": int(correct.size),
        "n_prompts": len(problems),
        "pass_at_n": float((correct.max(axis=1) > 0).mean()),
        "mean_length": float(np.mean([len(g.response_ids) for g in gens])),
        "share_chain": float(np.mean([t.split()[:1] == ["chain"] for t in texts])),
        "share_check": float(np.mean([t.split()[1:2] == ["check"] for t in texts])),
        "share_eq_format": float(np.mean(["answer =" in t for t in texts])),
        "share_truncated": float(np.mean([g.finish_reason == "length" for g in gens])),
    }
