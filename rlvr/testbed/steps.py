"""The long testbed: digit sums written out step by step, most tokens fixed by the prefix.

The problems, prompts and grader are the terse testbed's (`rlvr.testbed.digits`); only the
response grammar differs. A response restates every addition with a step label, so a 4-6 digit
problem takes 35-60 tokens, and only a few tokens are real choices:

    prompt:    sum 3 5 7 2 :
    response:  chain check ; step 1 : 3 + 5 = 8 ok ; step 2 : 8 + 7 = 16 fix 15 ;
               step 3 : 15 + 2 = 17 ok ; answer = 17

- the method (`chain`: running totals, reliable; `pairs`: pair sums, then their sums, slips
  more; `back`: running totals from the last digit, never in the pretraining corpus, the SFT
  control's style);
- the decision to verify (`check` or `;` right after the method word): a checked step is
  followed by `ok`, or by `fix` and the right value when its result slipped, so checking
  repairs slips; an unchecked slip propagates to the answer;
- the answer format (`answer = N` is graded, `answer ~ N` is rejected), as in the terse task.

The rest is determined by the prefix: step labels count up, each step restates the previous
total and the next operand, the answer copies the last total. `label_roles` names every token's
role in any token sequence (a model's own samples included).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from rlvr.testbed.digits import MAX_NUMBER, CorpusStyle, Problem, slip

KEYWORDS = ["sum", ":", "chain", "pairs", "back", "check", ";", "step", "+", "=", "ok", "fix",
            "answer", "~"]
METHODS = ("chain", "pairs", "back")
ROLES = ("method", "verify", "operand", "intermediate", "check", "format", "final_answer",
         "other")
DECISIVE_ROLES = ("method", "verify", "intermediate", "check", "format", "final_answer")


def pick_method(style: CorpusStyle, rng: random.Random) -> str:
    """`back` with probability p_back, else `chain` with probability p_chain, else `pairs`."""
    if rng.random() < style.p_back:
        return "back"
    return "chain" if rng.random() < style.p_chain else "pairs"


def write_response(problem: Problem, style: CorpusStyle, rng: random.Random) -> str:
    """Write one solution of `problem` in `style`; unchecked slips propagate like arithmetic."""
    method = pick_method(style, rng)
    check = rng.random() < style.p_check
    words = [method] + (["check"] if check else []) + [";"]

    def add(a: int, b: int, slip_rate: float) -> int:
        """One step `step k : a + b = c`, checked if the response checks; returns the total
        the next step builds on."""
        right = min(a + b, MAX_NUMBER)
        written = slip(right, rng) if rng.random() < slip_rate else right
        words.extend(["step", str(sum(w == "step" for w in words) + 1), ":", str(a), "+",
                      str(b), "=", str(written)])
        if check:
            words.extend(["ok"] if written == right else ["fix", str(right)])
            written = right
        words.append(";")
        return written

    digits = problem.digits
    if method == "pairs":
        n = len(digits)
        terms = [add(digits[i], digits[i + 1], style.slip_pairs) for i in range(0, n - 1, 2)]
        terms += list(digits[n - n % 2 :])  # an odd last digit joins the terms as it is
        total = terms[0]
        for term in terms[1:]:
            total = add(total, term, style.slip_pairs_total)
    else:
        order = digits if method == "chain" else digits[::-1]
        total = order[0]
        for d in order[1:]:
            total = add(total, d, style.slip_chain)
    sign = "~" if rng.random() < style.p_bad_format else "="
    return " ".join(words + ["answer", sign, str(total)])


def label_roles(tokens: Sequence[str]) -> list[str]:
    """Role of each response token under the grammar, one of `ROLES`.

    Works on any token sequence: method words are `method`; the token right after a method
    word is `verify` (`check`, or `;` for no check); `ok`/`fix` are `check`; a number after `=`
    or `fix` before the answer is `intermediate`, after `step` it is `other` (a label), any other
    number before the answer is an `operand` (a restated total or digit); the sign after `answer`
    is `format`, a number after it `final_answer`; everything else is `other`.
    """
    roles, prev, after_answer, after_sign = [], "", False, False
    for tok in tokens:
        if tok in METHODS:
            role = "method"
        elif prev in METHODS:
            role = "verify"
        elif tok in ("ok", "fix"):
            role = "check"
        elif tok == "answer":
            role, after_answer = "other", True
        elif tok in ("=", "~") and after_answer:
            role, after_sign = "format", True
        elif tok.isdigit():
            if after_sign:
                role = "final_answer"
            elif after_answer or prev == "step":
                role = "other"
            else:
                role = "intermediate" if prev in ("=", "fix") else "operand"
        else:
            role = "other"
        roles.append(role)
        prev = tok
    return roles
