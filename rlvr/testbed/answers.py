"""Answers in natural text: the extraction rule, its grader, and the token roles it implies.

The rule, explicit because it moves accuracy by tens of points on a small chat model:
**the answer is the number on the last `Answer:` marker** (case-insensitive; optional `**` bold,
`$` or spaces before the number; an optional sign; `,` thousands separators and a decimal part
allowed). A response with no such marker scores 0, whatever numbers it contains: the prompt
asks for the marker, so writing it is part of the task. `last_number` (the last number anywhere)
is reported beside it, never graded with, to show how much of a gain is format.

Token roles of a response, from the same rule (`label_answer_roles`, one per token):
`template` (chat-template special tokens such as `<|im_end|>`, which analyses can leave out),
`format` (the `Answer:` marker of the graded answer), `final_answer` (its number),
`intermediate` (every other number: the worked computation) and `other`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

NUMBER = r"[-+]?\d+(?:,\d{3})*(?:\.\d+)?"
ANSWER_RE = re.compile(r"(answer\s*:)\s*(?:\*\*)?\s*\$?\s*(" + NUMBER + ")", re.IGNORECASE)
NUMBER_RE = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
TEMPLATE_RE = re.compile(r"^<\|[A-Za-z_]+\|>$")  # ChatML-style special tokens: <|im_end|>, ...
ANSWER_ROLES = ("template", "format", "intermediate", "final_answer", "other")


def _value(text: str) -> Fraction | None:
    try:
        return Fraction(text.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(text: str) -> str | None:
    """The number on the last `Answer:` marker of `text`, as written (None without one)."""
    found = ANSWER_RE.findall(text)
    return found[-1][1] if found else None


def last_number(text: str) -> str | None:
    """The last number anywhere in `text` (the lenient rule reported beside the grade)."""
    found = NUMBER_RE.findall(text)
    return found[-1] if found else None


def same_number(written: str | None, answer: int | str) -> bool:
    """True when `written` is a number equal to `answer` (exactly, as rationals)."""
    if written is None:
        return False
    got, want = _value(written), _value(str(answer).strip())
    return got is not None and want is not None and got == want


def grade_answer(response: str, answer: int | str) -> int:
    """1 if the number on the response's last `Answer:` marker equals `answer`, else 0.
    Never raises."""
    return int(same_number(extract_answer(response), answer))


def _spans(text: str) -> list[tuple[int, int, str]]:
    """Character spans (start, end, role): the graded marker, its number, every other number."""
    found = list(ANSWER_RE.finditer(text))
    if not found:
        return [(m.start(), m.end(), "intermediate") for m in NUMBER_RE.finditer(text)]
    last = found[-1]
    spans = [(last.start(1), last.end(1), "format"), (last.start(2), last.end(2), "final_answer")]
    spans += [(m.start(), m.end(), "intermediate") for m in NUMBER_RE.finditer(text)
              if not last.start(2) <= m.start() < last.end(2)]
    return spans


def label_answer_roles(tokens: Sequence[str]) -> list[str]:
    """Role of each response token (its decoded text), one of `ANSWER_ROLES`.

    The tokens are joined into the response text; a token takes the role of the first span it
    overlaps (marker, answer, other numbers), `template` if it is a special token, else `other`.
    """
    text = "".join(t for t in tokens if not TEMPLATE_RE.match(t))
    spans = _spans(text)
    roles, at = [], 0
    for token in tokens:
        if TEMPLATE_RE.match(token):
            roles.append("template")
            continue
        start, end = at, at + len(token)
        at = end
        hit = [role for s, e, role in spans if s < end and start < e]
        order = ("final_answer", "format", "intermediate")
        roles.append(next((r for r in order if r in hit), "other"))
    return roles
