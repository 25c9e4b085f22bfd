"""The real pair's task: "What is a times b plus c?", a two-step computation with one answer.

Why this task: SmolLM2-135M-Instruct multiplies single digits often but not reliably and must
then add, so a correct answer needs the product, the sum and the `Answer: N` line the prompt
asks for. Shown one worked demonstration (`demos`) it follows the form in most samples and is
right in about a quarter of them at temperature 1 (greedy: about half): room for RL to improve
the computation itself, not only the format.

Problems are every (a, b, c) in [low, high]^3, ordered by a blake2b hash of (seed, a, b, c), so
the split is stable across machines and Python versions (never `hash()`): the first `demos`
problems are the worked demonstrations, the next `n_eval` the held-out split, the rest (or the
first `n_train` of them) the training split. Each prompt is a chat: a short system prompt, the
demonstrations as user/assistant turns, then the question (`PromptRecord.context` + `prompt`).
`describe_response` says how a response went about it (format, the two steps, which failed).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass

import pandas as pd

from rlvr.config import require
from rlvr.layout import Layout
from rlvr.store.atomic import atomic_file, sweep_debris
from rlvr.testbed.answers import extract_answer, last_number, same_number
from rlvr.testbed.prompts import PromptRecord

SYSTEM = "Show the short computation, then end with 'Answer: N'."


@dataclass(frozen=True)
class ArithmeticParams:
    """`task`: the a*b+c problems, their split and the prompt around them."""

    seed: int = 0
    low: int = 2  # operands a, b, c are integers in [low, high]
    high: int = 9
    demos: int = 1  # worked demonstrations before each question
    n_eval: int = 128  # held-out problems
    n_train: int = 0  # training problems (0: every problem not held out or shown)
    system: str = SYSTEM  # system prompt ("" leaves the tokenizer's default)

    def __post_init__(self) -> None:
        require(0 <= self.low <= self.high <= 99, "low", f"need 0 <= low <= high <= 99, got "
                f"{self.low}..{self.high}", "use e.g. low 2, high 9")
        require(self.demos >= 0 and self.n_eval >= 1 and self.n_train >= 0, "n_eval",
                "need demos >= 0, n_eval >= 1, n_train >= 0", "use e.g. 1, 128, 0")
        space = (self.high - self.low + 1) ** 3
        require(self.demos + self.n_eval + max(self.n_train, 1) <= space, "n_eval",
                f"demos + n_eval + n_train exceed the {space} distinct problems",
                "lower n_eval or n_train, or widen low..high")


@dataclass(frozen=True)
class Problem:
    a: int
    b: int
    c: int

    @property
    def answer(self) -> int:
        return self.a * self.b + self.c

    @property
    def prompt_id(self) -> str:
        return f"mad_{self.a}_{self.b}_{self.c}"

    @property
    def question(self) -> str:
        return f"What is {self.a} times {self.b} plus {self.c}?"

    @property
    def solution(self) -> str:
        """The reference response: the demonstrations' form, and the SFT control's data."""
        p = self.a * self.b
        return f"{self.a} × {self.b} = {p}, {p} + {self.c} = {self.answer}\nAnswer: {self.answer}"


def _order_key(seed: int, p: Problem) -> bytes:
    return hashlib.blake2b(f"{seed}/{p.a}/{p.b}/{p.c}".encode(), digest_size=8).digest()


def make_split(task: ArithmeticParams) -> dict[str, list[Problem]]:
    """`demo`, `eval` and `train` problems: disjoint, in a seed-stable order."""
    span = range(task.low, task.high + 1)
    every = sorted((Problem(a, b, c) for a, b, c in itertools.product(span, span, span)),
                   key=lambda p: _order_key(task.seed, p))
    demo, rest = every[: task.demos], every[task.demos :]
    held, train = rest[: task.n_eval], rest[task.n_eval :]
    return {"demo": demo, "eval": held, "train": train[: task.n_train] if task.n_train else train}


def context(task: ArithmeticParams, demos: list[Problem]) -> tuple[tuple[str, str], ...]:
    """The chat turns before each question: system prompt, then the worked demonstrations."""
    turns = [("system", task.system)] if task.system else []
    for p in demos:
        turns += [("user", p.question), ("assistant", p.solution)]
    return tuple(turns)


def records(problems: list[Problem], turns: tuple[tuple[str, str], ...]) -> list[PromptRecord]:
    return [PromptRecord(p.prompt_id, p.question, str(p.answer), turns) for p in problems]


def split_table(problems: list[Problem], turns: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """A split as the prompt-file layout (prompt_id, prompt, answer, context) plus the operands
    and the reference solution."""
    return pd.DataFrame({
        "prompt_id": [p.prompt_id for p in problems],
        "prompt": [p.question for p in problems],
        "answer": [str(p.answer) for p in problems],
        "context": [[{"role": r, "content": c} for r, c in turns] for _ in problems],
        "a": [p.a for p in problems], "b": [p.b for p in problems],
        "c": [p.c for p in problems],
        "solution": [p.solution for p in problems],
    })


_NUM = r"(\d+)"
_MUL = re.compile(_NUM + r"\s*(?:×|x|\*|times)\s*" + _NUM + r"\s*=\s*" + _NUM)
_ADD = re.compile(_NUM + r"\s*(?:\+|plus)\s*" + _NUM + r"\s*=\s*" + _NUM)


def problem_of(prompt_id: str) -> Problem:
    """The problem behind a prompt id `mad_<a>_<b>_<c>`."""
    _, a, b, c = prompt_id.split("_")
    return Problem(int(a), int(b), int(c))


def describe_response(problem: Problem, text: str) -> dict[str, bool]:
    """How a response went about the problem: booleans, one per step of the worked form.

    has_answer_line: it wrote the `Answer:` marker; canonical: exactly the demonstrated form;
    wrote_product: an `x × y = z` step; product_right: that step multiplies a and b correctly;
    wrote_sum: an `x + y = z` step; sum_uses_product: it adds c to the product it wrote;
    sum_right: that addition is right; answer_is_sum: the graded answer is the sum it wrote;
    lenient_right: the last number in the text is the answer (the lenient rule).
    """
    mul, add = _MUL.search(text), _ADD.search(text)
    answer = extract_answer(text)
    out = {"has_answer_line": answer is not None, "canonical": text.strip() == problem.solution,
           "wrote_product": mul is not None, "product_right": False, "wrote_sum": add is not None,
           "sum_uses_product": False, "sum_right": False, "answer_is_sum": False,
           "lenient_right": same_number(last_number(text), problem.answer)}
    if mul:
        x, y, z = map(int, mul.groups())
        out["product_right"] = {x, y} == {problem.a, problem.b} and z == problem.a * problem.b
        if add:
            u, v, s = map(int, add.groups())
            out["sum_uses_product"] = u == z and v == problem.c
            out["sum_right"] = u + v == s
            out["answer_is_sum"] = same_number(answer, s)
    return out


def prepare_task(layout: Layout, task: ArithmeticParams) -> dict[str, int]:
    """Write the demo, train and eval splits (prompt-file layout, context turns included)."""
    split = make_split(task)  # the params are checked when parsed; nothing else is read
    turns = context(task, split["demo"])
    sweep_debris(layout.root / "task")
    for name in ("demo", "train", "eval"):
        with atomic_file(layout.split(name)) as tmp:
            split_table(split[name], turns).to_parquet(tmp, index=False)
    return {name: len(problems) for name, problems in split.items()}
