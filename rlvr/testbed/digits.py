"""The terse testbed: digit sums with a verifiable answer, ~9-token responses.

A problem is a list of digits; its answer is their sum. A response follows a small grammar:

    prompt:    sum 3 5 7 2 9 :
    response:  chain 3 8 15 17 26 ; answer = 26          (reliable: running totals)
               pairs 8 9 9 ; answer = 26                 (error-prone: pair sums, then one big sum)
               back 9 11 18 23 26 ; answer = 26          (running totals from the last digit:
                                                          never in the pretraining corpus)

The pretraining corpus mixes both methods, plants plausible slips (off by one or by ten) in the
intermediate results and in the final sum, and writes some answers as `answer ~ N`, a form the
grader rejects. So a model trained on it is right only sometimes, and the tokens that decide
correctness are known: the method word, the intermediate numbers, the format sign and the final
number. `label_roles` names each token's role for any response, including a model's own samples.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
KEYWORDS = ["sum", ":", "chain", "pairs", "back", ";", "answer", "=", "~"]
MAX_NUMBER = 99  # every number 0..MAX_NUMBER is one token
METHODS = ("chain", "pairs", "back")
ROLES = ("method", "intermediate", "format", "final_answer", "other")
DECISIVE_ROLES = ("method", "intermediate", "format", "final_answer")

_ANSWER_RE = re.compile(r"(?:^|\s)answer = (\d+)\s*$")


@dataclass(frozen=True)
class Problem:
    """One problem: its digits, a stable id, and the exact answer."""

    digits: tuple[int, ...]

    @property
    def prompt_id(self) -> str:
        return "sum-" + "".join(map(str, self.digits))

    @property
    def prompt(self) -> str:
        return "sum " + " ".join(map(str, self.digits)) + " :"

    @property
    def answer(self) -> int:
        return sum(self.digits)


@dataclass(frozen=True)
class CorpusStyle:
    """Rates of the solution styles and slips in generated responses."""

    p_chain: float = 0.5  # share of responses using the reliable method
    slip_chain: float = 0.03  # per running-total slip rate of the reliable method
    slip_pairs: float = 0.08  # per pair-sum slip rate of the error-prone method
    slip_pairs_total: float = 0.3  # slip rate of the error-prone method's final big sum
    p_bad_format: float = 0.3  # share of answers written `answer ~ N` (graded wrong)
    p_check: float = 0.5  # steps testbed: share of responses that verify every step
    p_back: float = 0.0  # share written with running totals from the last digit (`back`)


# the SFT controls' data: slip-free, graded format; `reference` is the base's own preferred
# method (chain), `reverse` a correct style the base never saw (back, every step checked)
REFERENCE_STYLE = CorpusStyle(
    p_chain=1.0, slip_chain=0.0, slip_pairs=0.0, slip_pairs_total=0.0, p_bad_format=0.0,
    p_check=0.0,
)
REVERSE_STYLE = CorpusStyle(
    p_chain=1.0, slip_chain=0.0, slip_pairs=0.0, slip_pairs_total=0.0, p_bad_format=0.0,
    p_check=1.0, p_back=1.0,
)


def make_split(
    n_train: int, n_eval: int, seed: int, min_digits: int, max_digits: int
) -> tuple[list[Problem], list[Problem]]:
    """Draw disjoint train and eval problem sets, deterministically from `seed`."""
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    problems: list[Problem] = []
    capacity = sum(9**k for k in range(min_digits, max_digits + 1))
    if n_train + n_eval > capacity // 2:
        raise ValueError(
            f"task: n_train + n_eval = {n_train + n_eval} is too many distinct problems for "
            f"{min_digits}..{max_digits} digits (at most {capacity // 2}); "
            "lower them in params.yaml"
        )
    while len(problems) < n_train + n_eval:
        k = rng.randint(min_digits, max_digits)
        digits = tuple(rng.randint(1, 9) for _ in range(k))
        if digits not in seen:
            seen.add(digits)
            problems.append(Problem(digits))
    return problems[n_eval:], problems[:n_eval]


def slip(value: int, rng: random.Random) -> int:
    """A plausible wrong value: off by one, or a carry error (off by ten)."""
    while True:
        wrong = value + rng.choice([-1, 1, -10, 10])
        if 0 <= wrong <= MAX_NUMBER:
            return wrong


def write_response(problem: Problem, style: CorpusStyle, rng: random.Random) -> str:
    """Write one solution of `problem` in `style`; slips propagate like real arithmetic."""
    # p_back is drawn only when used, so the corpus of the two-method styles stays as it was
    back = style.p_back > 0 and rng.random() < style.p_back
    if back or rng.random() < style.p_chain:
        words, total = ["back" if back else "chain"], 0
        for i, d in enumerate(problem.digits[::-1] if back else problem.digits):
            total += d
            if i > 0 and rng.random() < style.slip_chain:
                total = slip(total, rng)
            words.append(str(total))
    else:
        words, sums = ["pairs"], []
        digits = problem.digits
        for i in range(0, len(digits), 2):
            s = sum(digits[i : i + 2])
            if i + 1 < len(digits) and rng.random() < style.slip_pairs:
                s = slip(s, rng)
            sums.append(s)
        words += [str(s) for s in sums]
        total = sum(sums)
        if rng.random() < style.slip_pairs_total:
            total = slip(total, rng)
    sign = "~" if rng.random() < style.p_bad_format else "="
    return " ".join(words + [";", "answer", sign, str(min(total, MAX_NUMBER))])


def make_corpus(problems: Sequence[Problem], style: CorpusStyle, seed: int) -> list[str]:
    """One response per problem, as `prompt response` texts ready for next-token training."""
    rng = random.Random(seed)
    return [f"{p.prompt} {write_response(p, style, rng)}" for p in problems]


def grade(response: str, answer: int | str) -> int:
    """1 if `response` ends with `answer = N` and N equals `answer`, else 0. Never raises."""
    match = _ANSWER_RE.search(response)
    if match is None:
        return 0
    try:
        return int(int(match.group(1)) == int(answer))
    except (TypeError, ValueError):
        return 0


def label_roles(tokens: Sequence[str]) -> list[str]:
    """Role of each response token under the grammar, one of `ROLES`.

    Works on any token sequence (a model's sample may break the grammar): method words are
    `method`, numbers before the first `answer` are `intermediate`, the sign after `answer` is
    `format`, a number after that sign is `final_answer`, and everything else is `other`.
    """
    roles, after_answer, after_sign = [], False, False
    for tok in tokens:
        if tok in METHODS:
            role = "method"
        elif tok == "answer":
            role, after_answer = "other", True
        elif tok in ("=", "~") and after_answer:
            role, after_sign = "format", True
        elif tok.isdigit():
            role = "final_answer" if after_sign else ("other" if after_answer else "intermediate")
        else:
            role = "other"
        roles.append(role)
    return roles
