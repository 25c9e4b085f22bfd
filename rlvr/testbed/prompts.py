"""Evaluation prompts: the built-in task's eval split or a user file, encoded for a model.

A prompt file is JSONL or parquet with `prompt` and `answer` columns, an optional `prompt_id`
(default: `p<row>`) and an optional `context`: chat turns before the prompt, a list of
`{"role": ..., "content": ...}` (a system prompt, few-shot demonstrations). Rows are numbered
from 1 in error messages (the JSONL line number). The ids returned by `encode_prompts` are
exactly what the sampler feeds the model: the context turns and the prompt as a user turn
through the chat template when the tokenizer has one, else the tokenizer's own special tokens
(BOS for the toy tokenizer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from transformers import PreTrainedTokenizerBase

from rlvr.layout import Layout
from rlvr.testbed.digits import Problem, make_split

REQUIRED = ("prompt", "answer")


@dataclass(frozen=True)
class PromptRecord:
    """One evaluation problem: a stable id, the prompt text, and the reference answer."""

    prompt_id: str
    prompt: str
    answer: str
    context: tuple[tuple[str, str], ...] = ()  # (role, content) chat turns before the prompt


def _read_rows(path: Path, where: str) -> list[dict]:
    if path.suffix == ".parquet":
        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowInvalid, OSError):
            raise ValueError(f"{where}{path}: not a readable parquet file (corrupt, or another "
                             "format); write it with pandas or pyarrow, or use .jsonl") from None
    if path.suffix in (".jsonl", ".json"):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{where}{path}: not UTF-8 text (byte {err.start}); save the file "
                             "as UTF-8") from None
        rows = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}{path} line {line_no}: not valid JSON ({err.msg}); "
                                 "write one JSON object per line") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}{path} line {line_no}: expected a JSON object per line")
            rows.append(row)
        return rows
    raise ValueError(f"{where}{path}: unknown prompt file type {path.suffix!r}; use .jsonl or "
                     ".parquet")


def _context(turns: object, at: str) -> tuple[tuple[str, str], ...]:
    """A row's `context` as (role, content) pairs; ValueError naming the row when malformed."""
    if turns is None:
        return ()
    ok = isinstance(turns, list | tuple) and all(
        isinstance(t, dict) and isinstance(t.get("role"), str) and isinstance(t.get("content"), str)
        for t in turns)
    if not ok:
        raise ValueError(f"{at}: `context` must be a list of {{\"role\": ..., \"content\": ...}} "
                         "turns")
    return tuple((t["role"], t["content"]) for t in turns)


def load_prompt_file(path: str | Path, key: str = "task.prompts") -> list[PromptRecord]:
    """Read and validate a prompt file; any bad row raises a ValueError naming the params key
    `key`, the file and the row."""
    path = Path(path)
    where = f"params.yaml `{key}`: " if key else ""
    if not path.exists():
        raise FileNotFoundError(f"{where}prompt file {path} does not exist; fix the path")
    rows = _read_rows(path, where)
    if not rows:
        raise ValueError(f"{where}{path}: no prompts in the file")
    records, first_row = [], {}
    for n, row in enumerate(rows, start=1):
        at = f"{where}{path} row {n}"
        missing = [c for c in REQUIRED if c not in row]
        if missing:
            raise ValueError(f"{at}: missing column(s) {missing}; every row needs "
                             f"`prompt` and `answer` (and optionally `prompt_id`)")
        prompt, answer = row["prompt"], row["answer"]
        if not isinstance(prompt, str):
            raise ValueError(f"{at}: prompt {prompt!r} is not text")
        if not prompt.strip():
            raise ValueError(f"{at}: empty prompt")
        if answer is None or str(answer).strip() == "":
            raise ValueError(f"{at}: empty answer")
        pid = row.get("prompt_id")
        pid = f"p{n:06d}" if pid is None else str(pid)
        if not pid:
            raise ValueError(f"{at}: empty prompt_id")
        if pid in first_row:
            raise ValueError(f"{at}: duplicate prompt_id {pid!r} (first seen at row "
                             f"{first_row[pid]})")
        first_row[pid] = n
        records.append(PromptRecord(pid, prompt, str(answer), _context(row.get("context"), at)))
    return records


def load_prompts(path: str, layout: Layout, key: str = "sample.prompts") -> list[PromptRecord]:
    """The prompts a run asks: the user file `path`, or the testbed's eval split when empty."""
    if not path and not layout.split("eval").exists():
        raise FileNotFoundError(f"no eval split at {layout.split('eval')}: run the prepare stage "
                                "first (dvc repro prepare)")
    return load_prompt_file(path or layout.split("eval"), key if path else "")


def records_of(problems: Sequence[Problem]) -> list[PromptRecord]:
    """Toy-task problems as prompt records (what the split files hold)."""
    return [PromptRecord(p.prompt_id, p.prompt, str(p.answer)) for p in problems]


def prompt_origin(path: str, layout: Layout, key: str = "sample.prompts") -> str:
    """How messages name the file `load_prompts` reads, with the params key that names it."""
    return f"params.yaml `{key}`: {path}" if path else str(layout.split("eval"))


def task_prompts(n_eval: int, seed: int, min_digits: int, max_digits: int) -> list[PromptRecord]:
    """The built-in eval problems drawn directly from the task (what `prepare` writes)."""
    _, problems = make_split(0, n_eval, seed, min_digits, max_digits)
    return records_of(problems)


def encode_prompts(
    records: Sequence[PromptRecord], tokenizer: PreTrainedTokenizerBase, chat_template: bool = True
) -> list[list[int]]:
    """Token ids fed to the model for each prompt: its context turns and the prompt as a user
    turn through the tokenizer's chat template when it has one and `chat_template` (a model
    spec's), else the prompt with the tokenizer's own special tokens (no context allowed)."""
    if chat_template and tokenizer.chat_template:
        texts = [
            tokenizer.apply_chat_template(
                [{"role": role, "content": content} for role, content in r.context]
                + [{"role": "user", "content": r.prompt}],
                tokenize=False, add_generation_prompt=True,
            )
            for r in records
        ]
        # the rendered template already holds every special token it wants
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    with_context = [r.prompt_id for r in records if r.context]
    if with_context:
        raise ValueError(f"prompt {with_context[0]!r} has `context` turns, but the model has no "
                         "chat template to put them in (or `chat_template: false`); drop the "
                         "context or use a chat model")
    return [tokenizer(r.prompt)["input_ids"] for r in records]


def n_shards(records: Sequence[PromptRecord], shard_size: int) -> int:
    """How many shards of `shard_size` prompts cover `records`."""
    return -(-len(records) // shard_size)


def prompt_shard(
    records: Sequence[PromptRecord], shard: int, shard_size: int
) -> list[PromptRecord]:
    """The prompts of shard number `shard` (file order)."""
    return list(records[shard * shard_size : (shard + 1) * shard_size])
