"""Whether a grader and a token-role labeller fit a set of prompts, checked before any write.

A grader that does not fit its prompts grades without an error and gives wrong rewards (the
`math` grader on the toy testbed accepts the `answer ~ N` form the `toy` grader rejects on
purpose: measured, 33 of 256 rewards flipped 0 -> 1), and a labeller that does not fit names
tokens wrongly (the testbed grammar on natural text tags digits `operand`). So each is checked
against the prompts it will see:

- every gold answer must be gradable: the grader's own canonical form of the answer
  (`answer = N`, `\\boxed{N}`, `Answer: N`) must grade 1;
- the toy testbed's prompts (`sum 3 5 7 :`) need the `toy` grader and a testbed grammar's
  labeller; any other prompt needs a natural-text grader and labeller.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlvr.testbed.graders import GRADERS, grade_math_many
from rlvr.testbed.prompts import PromptRecord
from rlvr.testbed.split import parse_prompt

CANONICAL = {"toy": "answer = {}", "math": "\\boxed{{{}}}", "answer": "Answer: {}"}
NATURAL_LABELLERS = ("answer", "none")


def _toy_prompt(prompt: str) -> bool:
    try:
        parse_prompt(prompt, "")
    except ValueError:
        return False
    return True


def _first_natural(records: Sequence[PromptRecord]) -> tuple[int, PromptRecord] | None:
    """The first row (1-based) whose prompt is not a toy testbed prompt, if any."""
    return next(((n, r) for n, r in enumerate(records, start=1) if not _toy_prompt(r.prompt)),
                None)


def check_grader_fits(grader: str, records: Sequence[PromptRecord], key: str) -> None:
    """ValueError naming `key` when `grader` cannot grade these prompts' answers."""
    natural = _first_natural(records)
    if grader == "toy" and natural is not None:
        n, r = natural
        raise ValueError(f"params.yaml `{key}`: the toy grader reads only the toy testbed's "
                         f"`answer = N`, but prompt row {n} ({r.prompt_id!r}) is not a toy "
                         "prompt; use `math` (boxed answers) or `answer` (`Answer: N`)")
    if grader != "toy" and natural is None:
        raise ValueError(f"params.yaml `{key}`: `{grader}` on the toy testbed's prompts accepts "
                         "answers the toy grader rejects on purpose (`answer ~ N`); use `toy`")
    forms = [CANONICAL[grader].format(r.answer) for r in records]
    answers = [r.answer for r in records]
    if grader == "math":
        grades = grade_math_many(forms, answers)
    else:
        grades = [GRADERS[grader](f, a) for f, a in zip(forms, answers, strict=True)]
    for n, (r, g) in enumerate(zip(records, grades, strict=True), start=1):
        if not g:
            raise ValueError(f"params.yaml `{key}`: `{grader}` cannot grade the answer of prompt "
                             f"row {n} ({r.prompt_id!r}): {r.answer!r} (even "
                             f"{CANONICAL[grader].format(r.answer)!r} grades 0); fix the answer "
                             "or pick another grader")


def check_labeller_fits(labeller: str, records: Sequence[PromptRecord], key: str) -> None:
    """ValueError naming `key` when `labeller` would name these prompts' tokens wrongly."""
    if labeller == "none":
        return
    natural = _first_natural(records)
    if labeller in NATURAL_LABELLERS and natural is None:
        raise ValueError(f"params.yaml `{key}`: `{labeller}` reads natural text, but every prompt "
                         f"is the toy testbed's (e.g. {records[0].prompt!r}); use the testbed's "
                         "grammar (steps or digits)")
    if labeller not in NATURAL_LABELLERS and natural is not None:
        n, r = natural
        raise ValueError(f"params.yaml `{key}`: `{labeller}` labels the toy testbed's grammar, "
                         f"but prompt row {n} ({r.prompt_id!r}) is natural text; use `answer` "
                         "(or `none`)")
