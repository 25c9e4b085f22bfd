"""The pair family: a user's own checkpoints (a base and one or more RL-tuned siblings, optionally
RL checkpoints and an SFT control) and a benchmark's prompts. It builds nothing.

Its models are `models.named` entries (written by `rlvr init`); its task section names the prompt
file(s), the grader and the labeller. `prepare` checks the files and writes them as the eval
(and train) split, so every later stage reads the prompts the same way for every family; before
it writes, `check_fit` refuses a grader or labeller that does not fit the prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from rlvr.config import require
from rlvr.families import Family
from rlvr.layout import Layout
from rlvr.store.atomic import atomic_file, sweep_debris
from rlvr.testbed.answers import label_answer_roles
from rlvr.testbed.fit import check_grader_fits, check_labeller_fits
from rlvr.testbed.graders import GRADERS
from rlvr.testbed.grammars import GRAMMARS
from rlvr.testbed.prompts import PromptRecord, load_prompt_file


@dataclass(frozen=True)
class PairTask:
    """`task` of a pair workspace: the prompts asked, how answers are graded and tokens named."""

    prompts: str = ""  # eval prompts: .jsonl or .parquet, `prompt` + `answer` (+ prompt_id)
    train_prompts: str = ""  # training prompts, only for the opt-in weighted runs
    grader: str = "math"  # rlvr.testbed.graders: math (boxed answers), answer (`Answer: N`), toy
    # token roles: `answer` (natural text: template, format, final_answer, intermediate, other),
    # `none`, or a toy testbed grammar (steps, digits) for pairs of toy models
    labeller: Literal["answer", "none", "steps", "digits"] = "answer"

    def __post_init__(self) -> None:
        require(bool(self.prompts), "prompts", "is empty", "give the prompt file (.jsonl or "
                ".parquet with `prompt` and `answer` columns)")
        require(self.grader in GRADERS, "grader", f"unknown grader {self.grader!r}",
                f"use one of {sorted(GRADERS)}")


def write_split(layout: Layout, name: str, records: list[PromptRecord]) -> None:
    """Prompt records as split `name` (prompt-file layout: prompt_id, prompt, answer, context)."""
    table = pd.DataFrame({
        "prompt_id": [r.prompt_id for r in records],
        "prompt": [r.prompt for r in records],
        "answer": [r.answer for r in records],
        "context": [[{"role": a, "content": b} for a, b in r.context] or None for r in records],
    })
    with atomic_file(layout.split(name)) as tmp:
        table.to_parquet(tmp, index=False)


def check_fit(layout: Layout, task: PairTask) -> dict[str, list[PromptRecord]]:
    """Read every prompt file and check the grader and labeller against it; the splits."""
    splits = {"eval": load_prompt_file(task.prompts, "task.prompts")}
    if task.train_prompts:
        splits["train"] = load_prompt_file(task.train_prompts, "task.train_prompts")
    for records in splits.values():
        check_grader_fits(task.grader, records, "task.grader")
        check_labeller_fits(task.labeller, records, "task.labeller")
    return splits


def prepare(layout: Layout, task: PairTask) -> dict[str, int]:
    """The user's prompt files, checked, as data/task/eval.parquet (and train.parquet)."""
    splits = check_fit(layout, task)
    sweep_debris(layout.root / "task")
    for name in ("eval", "train"):
        if name not in splits:
            layout.split(name).unlink(missing_ok=True)
            continue
        write_split(layout, name, splits[name])
    return {name: len(records) for name, records in splits.items()}


def _labeller(task: PairTask):
    if task.labeller == "none":
        return None
    if task.labeller == "answer":
        return label_answer_roles
    return GRAMMARS[task.labeller].label_roles


FAMILY = Family(
    name="pair",
    summary="your own checkpoints (a base and its RL-tuned siblings) and a prompt file",
    task=PairTask,
    prepare=prepare,
    grader=lambda task: task.grader,
    labeller=_labeller,
    check_fit=check_fit,
    defaults={"analyze": {"exclude_roles": ["template"], "decisive_roles": [
        "format", "intermediate", "final_answer"]}},
)
