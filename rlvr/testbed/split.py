"""The task's train/eval split: generated problems, or a user eval file checked against train.

The split is stored as parquet with columns prompt_id, prompt, answer (string), n_digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from rlvr.config import require
from rlvr.layout import Layout
from rlvr.store.atomic import atomic_file, sweep_debris
from rlvr.testbed.digits import CorpusStyle, Problem, make_split


@dataclass(frozen=True)
class TaskParams:
    """`task`: the synthetic problem set, its split, and the pretraining corpus styles."""

    # the response grammar (rlvr.testbed.grammars): `steps` long, mostly determined by the
    # prefix, with a few planted forks; `digits` terse (~9 tokens, almost every token a choice)
    testbed: Literal["steps", "digits"] = "steps"
    seed: int = 0
    n_train: int = 6000
    n_eval: int = 256
    min_digits: int = 4
    max_digits: int = 6
    p_chain: float = 0.5  # share of corpus solutions using the reliable running-total method
    slip_chain: float = 0.03  # slip rate per running total (reliable method)
    slip_pairs: float = 0.08  # slip rate per pair sum (error-prone method)
    slip_pairs_total: float = 0.3  # slip rate of the error-prone method's final sum
    p_bad_format: float = 0.3  # share of answers written `answer ~ N`, which the grader rejects
    p_check: float = 0.5  # steps testbed: share of solutions that check every step (and fix slips)
    eval_prompts: str = ""  # optional user eval file (`prompt` column); must not overlap train

    def __post_init__(self) -> None:
        for key in ("n_train", "n_eval"):
            require(getattr(self, key) > 0, key, "must be positive", "use at least 1")
        require(1 <= self.min_digits <= self.max_digits <= 9, "min_digits",
                f"need 1 <= min <= max <= 9, got {self.min_digits}..{self.max_digits}",
                "pick a digit range inside 1..9")
        for key in ("p_chain", "slip_chain", "slip_pairs", "slip_pairs_total", "p_bad_format",
                    "p_check"):
            value = getattr(self, key)
            require(0.0 <= value <= 1.0, key, f"is a probability, got {value}",
                    "use a value in [0, 1]")

    @property
    def style(self) -> CorpusStyle:
        """The pretraining corpus's solution styles and slip rates."""
        return CorpusStyle(self.p_chain, self.slip_chain, self.slip_pairs, self.slip_pairs_total,
                           self.p_bad_format, self.p_check)


def problem_table(problems: Sequence[Problem]) -> pd.DataFrame:
    """The split's parquet layout: prompt_id, prompt, answer (string), n_digits."""
    return pd.DataFrame({
        "prompt_id": [p.prompt_id for p in problems],
        "prompt": [p.prompt for p in problems],
        "answer": [str(p.answer) for p in problems],
        "n_digits": [len(p.digits) for p in problems],
    })


def parse_prompt(prompt: str, source: str) -> Problem:
    """The problem behind a task prompt `sum d d ... :`; ValueError naming `source` otherwise."""
    words = str(prompt).split()
    ok = len(words) >= 3 and words[0] == "sum" and words[-1] == ":"
    ok = ok and all(w.isdigit() and len(w) == 1 and w != "0" for w in words[1:-1])
    if not ok:
        raise ValueError(f"{source}: {prompt!r} is not a task prompt; write `sum 3 5 7 :` "
                         "(digits 1-9 between `sum` and `:`)")
    return Problem(tuple(int(w) for w in words[1:-1]))


def read_problems(path: str | Path, source: str = "") -> list[Problem]:
    """Problems from a split parquet or a user file (.parquet/.jsonl/.csv, `prompt` column)."""
    path = Path(path)
    source = source or str(path)
    if not path.exists():
        raise FileNotFoundError(f"{source}: no file at {path}; run the `prepare` stage "
                                "(dvc repro prepare) or fix the path")
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".jsonl":
        df = pd.read_json(path, lines=True)
    elif path.suffix == ".csv":
        df = pd.read_csv(path, dtype=str)
    else:
        raise ValueError(f"{source}: unknown file type {path.suffix!r}; "
                         "use .parquet, .jsonl or .csv")
    if "prompt" not in df.columns:
        raise ValueError(f"{source}: {path} has no `prompt` column (columns: {list(df.columns)})")
    return [parse_prompt(p, source) for p in df["prompt"]]


def check_disjoint(train: Sequence[Problem], evaluation: Sequence[Problem], key: str) -> None:
    """Raise ValueError naming `key` when an eval problem is also a train problem."""
    seen = {p.prompt_id for p in train} | {p.prompt for p in train}
    shared = [p.prompt for p in evaluation if p.prompt_id in seen or p.prompt in seen]
    if shared:
        raise ValueError(
            f"params.yaml `{key}`: {len(shared)} eval prompts are also train prompts "
            f"(e.g. {shared[0]!r}); remove them from the eval file or change task.seed"
        )


def prepare_split(task: TaskParams, layout: Layout) -> dict[str, int]:
    """Write train.parquet and eval.parquet; a user eval file replaces the generated eval split."""
    train, evaluation = make_split(task.n_train, task.n_eval, task.seed,
                                   task.min_digits, task.max_digits)
    if task.eval_prompts:
        evaluation = read_problems(task.eval_prompts, "params.yaml `task.eval_prompts`")
    check_disjoint(train, evaluation, "task.eval_prompts" if task.eval_prompts else "task.seed")
    sweep_debris(*layout.outputs("prepare"))
    for name, problems in (("train", train), ("eval", evaluation)):
        with atomic_file(layout.split(name)) as tmp:
            problem_table(problems).to_parquet(tmp, index=False)
    return {"n_train": len(train), "n_eval": len(evaluation)}

