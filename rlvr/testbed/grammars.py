"""The testbeds by name (`task.testbed`): each is a response grammar over the same problems.

`digits` is the terse grammar (`rlvr.testbed.digits`, ~9-token responses, almost every token a
choice); `steps` the long one (`rlvr.testbed.steps`, 35-60 tokens, most fixed by the prefix, a
few planted forks). Both share the problems, prompts and the `toy` grader (their last line is
`answer = N`); they differ in the corpus writer, the vocabulary and the role labeller.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rlvr.testbed import digits, steps
from rlvr.testbed.digits import REFERENCE_STYLE, REVERSE_STYLE, CorpusStyle, Problem

SFT_STYLES = {"reference": REFERENCE_STYLE, "reverse": REVERSE_STYLE}


@dataclass(frozen=True)
class Grammar:
    """One testbed's response grammar: its writer, its keywords and its role labeller."""

    name: str
    keywords: tuple[str, ...]  # the tokenizer's words besides specials and numbers
    write: Callable[[Problem, CorpusStyle, random.Random], str]
    label_roles: Callable[[Sequence[str]], list[str]]
    roles: tuple[str, ...]
    decisive_roles: tuple[str, ...]  # the roles that can decide correctness, by construction

    def corpus(self, problems: Sequence[Problem], style: CorpusStyle, seed: int) -> list[str]:
        """One response per problem in `style` (responses only, no prompts), seeded."""
        rng = random.Random(seed)
        return [self.write(p, style, rng) for p in problems]


GRAMMARS = {
    "digits": Grammar("digits", tuple(digits.KEYWORDS), digits.write_response,
                      digits.label_roles, digits.ROLES, digits.DECISIVE_ROLES),
    "steps": Grammar("steps", tuple(steps.KEYWORDS), steps.write_response, steps.label_roles,
                     steps.ROLES, steps.DECISIVE_ROLES),
}

# every role any testbed labels: what the token gate accepts (user data has none, null)
ALL_ROLES = tuple(dict.fromkeys(r for g in GRAMMARS.values() for r in g.roles))


def get_grammar(name: str, key: str = "task.testbed") -> Grammar:
    """The testbed grammar registered under `name`."""
    if name not in GRAMMARS:
        raise ValueError(f"params.yaml `{key}`: unknown testbed {name!r}; use one of "
                         f"{sorted(GRAMMARS)}")
    return GRAMMARS[name]
