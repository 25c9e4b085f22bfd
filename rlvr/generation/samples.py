"""The sampling stage's library half: n graded responses per prompt, as `samples` table rows.

`sample_rows` draws with the KV-cached sampler (`rlvr.generation.sampler.sample`) and hands the
generations to `generation_rows`, the one place that turns generation results into rows, so
another backend (e.g. vLLM) only has to produce `Generation`s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.config import require
from rlvr.generation.backends import BackendParams, make_backend
from rlvr.generation.sampler import Generation, SamplingParams, sample
from rlvr.layout import Layout
from rlvr.models.checks import check_model, fit_prompts
from rlvr.models.loading import check_lengths, load_tokenizer, pin_torch_threads
from rlvr.models.specs import ModelEntry, ModelsParams, plan_models
from rlvr.store.hashing import fingerprint
from rlvr.store.tables import SAMPLES_SCHEMA, part_is_current, to_table, write_part
from rlvr.testbed.graders import get_grader
from rlvr.testbed.prompts import PromptRecord, encode_prompts, load_prompts, prompt_origin

Grader = Callable[[str, str], int]


@dataclass(frozen=True)
class SampleParams:
    """`sample`: which models answer the family's eval prompts, and how responses are drawn
    (the family's grader grades them)."""

    models: list[str] = field(default_factory=lambda: ["base", "rl", "sft", "rft"])
    checkpoints: bool = True  # also every RL checkpoint rl_step_<N>
    # a prompt too long for a model, or with words outside its vocabulary: stop the run naming
    # its row (error), or skip it for every model and log the count (drop)
    unfit_prompts: Literal["error", "drop"] = "error"
    n_per_prompt: int = 4
    temperature: float = 1.0
    top_p: float = 1.0  # the study sampled with 0.7
    max_new_tokens: int = 64  # the steps testbed's responses run to ~60 tokens
    seed: int = 0
    shard_size: int = 64  # prompts per shard: one task and one part file per (model, shard)

    def __post_init__(self) -> None:
        require(bool(self.models) and len(set(self.models)) == len(self.models), "models",
                "must be a non-empty list of distinct model names", "e.g. [base, rl]")
        for key in ("n_per_prompt", "max_new_tokens", "shard_size"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")
        require(self.temperature >= 0, "temperature", "must be >= 0", "use e.g. 1.0")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]", "use e.g. 1.0 or 0.7")

    @property
    def sampling(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.max_new_tokens, self.seed)


@dataclass(frozen=True)
class SamplePlan:
    """The checked inputs of a sample run: the models and the prompts they all answer."""

    entries: list[ModelEntry]
    records: list[PromptRecord]
    dropped: int  # prompts skipped because they do not fit a model (`unfit_prompts: drop`)


def plan_samples(cfg: SampleParams, models: ModelsParams, layout: Layout) -> SamplePlan:
    """Check every input of the sample stage before any output is touched: each model's files
    (`check_model`) and the prompt file, rows and fit to every model (`fit_prompts`)."""
    entries = plan_models(cfg.models, models, layout, cfg.checkpoints)
    facts = [check_model(e.spec) for e in entries]
    records, dropped = fit_prompts(load_prompts("", layout), facts, cfg.max_new_tokens,
                                   cfg.unfit_prompts == "drop", prompt_origin("", layout),
                                   "sample.unfit_prompts")
    return SamplePlan(entries, records, dropped)


def sample_keys(records: Sequence[PromptRecord], n: int) -> tuple[list[int], list[str]]:
    """Row order of a shard: each prompt repeated n times, with its (prompt, sample) stream key.

    Keys do not name the model, so every model sees the same random numbers for a given
    (prompt, sample): common random numbers make model comparisons less noisy.
    """
    index = [i for i in range(len(records)) for _ in range(n)]
    keys = [f"{records[i].prompt_id}/{j}" for i in range(len(records)) for j in range(n)]
    return index, keys


def generation_rows(
    entry: ModelEntry,
    records: Sequence[PromptRecord],
    n: int,
    generations: Sequence[Generation],
    tokenizer: PreTrainedTokenizerBase,
    grader: Grader,
    params: SamplingParams,
) -> pa.Table:
    """Samples-table rows for generations laid out as `sample_keys(records, n)`."""
    index, _ = sample_keys(records, n)
    assert len(generations) == len(index), "one generation per (prompt, sample)"
    eos = tokenizer.eos_token_id
    cols: dict[str, list] = {name: [] for name in SAMPLES_SCHEMA.names}
    for row, (i, gen) in enumerate(zip(index, generations, strict=True)):
        rec = records[i]
        body = gen.response_ids[:-1] if gen.finish_reason == "eos" else gen.response_ids
        text = tokenizer.decode(body, skip_special_tokens=True)
        values = {
            "model": entry.name, "model_kind": entry.kind, "rl_step": entry.rl_step,
            "prompt_id": rec.prompt_id, "sample_id": row % n,
            "prompt": rec.prompt, "answer": rec.answer,
            "prompt_token_ids": gen.prompt_ids, "response_token_ids": gen.response_ids,
            "response_text": text, "n_tokens": len(gen.response_ids),
            "finish_reason": gen.finish_reason, "reward": grader(text, rec.answer),
            "sampling_logprobs": gen.logprobs, "temperature": params.temperature,
            "top_p": params.top_p, "max_new_tokens": params.max_new_tokens, "seed": params.seed,
        }
        assert gen.response_ids[-1:] != [eos] or gen.finish_reason == "eos"
        for key, value in values.items():
            cols[key].append(value)
    return to_table(cols, SAMPLES_SCHEMA)


def sample_rows(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    entry: ModelEntry,
    records: Sequence[PromptRecord],
    n: int,
    params: SamplingParams,
    grader: Grader,
    batch_size: int = 256,
    progress: bool = False,
) -> pa.Table:
    """Draw `n` responses per prompt from `model`, grade them, and return samples rows."""
    prompt_ids = encode_prompts(records, tokenizer)
    index, keys = sample_keys(records, n)
    generations = sample(
        model, [prompt_ids[i] for i in index], keys, params,
        eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
        batch_size=batch_size, progress=progress,
    )
    return generation_rows(entry, records, n, generations, tokenizer, grader, params)


def _prompt_key(record: PromptRecord) -> tuple:
    """A prompt's part of a shard's fingerprint; without context turns it is what it was before
    records had them, so the toy's part files (and their DVC hashes) did not change with them."""
    key = dataclasses.astuple(record)
    return key if record.context else key[:3]


def sample_shard(
    entry: ModelEntry,
    records: Sequence[PromptRecord],
    n: int,
    params: SamplingParams,
    grader: str,
    backend: BackendParams,
    out_path: str | Path,
    progress: bool = False,
) -> dict:
    """Sample one shard of prompts with one model into an atomic part file.

    A part file written from the same model contents, prompts and parameters is kept as is.
    Returns a small summary (path, rows, mean reward, skipped).
    """
    key = fingerprint(model=entry.spec.identity(), name=entry.name, kind=entry.kind,
                      rl_step=entry.rl_step, prompts=[_prompt_key(r) for r in records],
                      n=n, params=dataclasses.asdict(params), backend=backend.name,
                      grader=grader)
    if part_is_current(out_path, key):
        return {"path": str(out_path), "rows": pq.read_metadata(out_path).num_rows,
                "skipped": True}
    pin_torch_threads()
    tokenizer = load_tokenizer(entry.spec)
    prompt_ids = encode_prompts(records, tokenizer, entry.spec.chat_template)
    check_lengths(prompt_ids, params.max_new_tokens, entry.spec)
    engine = make_backend(backend, entry.spec, tokenizer)
    index, keys = sample_keys(records, n)
    generations = engine.generate([prompt_ids[i] for i in index], keys, params, progress)
    table = generation_rows(entry, records, n, generations, tokenizer, get_grader(grader),
                            params)
    rows = write_part([table], out_path, SAMPLES_SCHEMA, key)
    rewards = table.column("reward").to_pylist()
    return {"path": str(out_path), "rows": rows, "skipped": False,
            "mean_reward": sum(rewards) / max(len(rewards), 1)}


def summarize_samples(root: str | Path) -> dict:
    """Responses, mean reward and share stopped by EOS per model: the sample stage's metrics."""
    out = {}
    for d in sorted(Path(root).glob("model=*")):
        table = pa.concat_tables([
            pq.read_table(p, columns=["reward", "finish_reason", "n_tokens"])
            for p in sorted(d.glob("part-*.parquet"))])
        reward = table.column("reward").to_numpy()
        eos = [f == "eos" for f in table.column("finish_reason").to_pylist()]
        out[d.name.removeprefix("model=")] = {
            "responses": table.num_rows, "mean_reward": float(reward.mean()),
            "eos_share": sum(eos) / len(eos),
            "mean_tokens": float(table.column("n_tokens").to_numpy().mean()),
        }
    return out
