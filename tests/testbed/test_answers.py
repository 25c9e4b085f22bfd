"""The natural-text answer rule, its grader and the token roles it implies."""

from __future__ import annotations

import pytest

from rlvr.testbed.answers import (
    ANSWER_ROLES,
    extract_answer,
    grade_answer,
    label_answer_roles,
    last_number,
)
from rlvr.testbed.graders import GRADERS, ROLES, get_labeller
from rlvr.testbed.grammars import GRAMMARS

GRADE_CASES = [
    ("7 × 8 = 56, 56 + 3 = 59\nAnswer: 59", "59", 1),  # the demonstrated form
    ("7 × 8 = 56, 56 + 3 = 59\nAnswer: 58", "59", 0),  # wrong number on the marker
    ("7 × 8 = 56, 56 + 3 = 59", "59", 0),  # right number, no marker: the rule needs it
    ("answer: 59", "59", 1),  # case-insensitive
    ("**Answer:** 59", "59", 1),  # markdown bold around the marker
    ("Answer: **59**", "59", 1),  # bold number
    ("Answer: $59", "59", 1),  # currency sign
    ("Answer: 1,059", "1059", 1),  # thousands separator
    ("Answer: 59.0", "59", 1),  # the same rational
    ("Answer: -4", "-4", 1),  # sign
    ("Answer: 12\nwait, Answer: 59", "59", 1),  # the last marker wins
    ("Answer: 59\nAnswer: 12", "59", 0),
    ("Answer: fifty-nine", "59", 0),  # words are not numbers
    ("", "59", 0),  # empty response
    ("Answer: 59", "not a number", 0),  # malformed gold: 0, never raises
]


@pytest.mark.parametrize(("response", "answer", "expected"), GRADE_CASES)
def test_grade_answer(response, answer, expected):
    assert grade_answer(response, answer) == expected
    assert GRADERS["answer"](response, answer) == expected


def test_extract_and_lenient_rules():
    text = "7 × 8 = 56, 56 + 3 = 59\nAnswer: 58 and 60"
    assert extract_answer(text) == "58" and last_number(text) == "60"
    assert extract_answer("no marker 5") is None and last_number("none") is None


def test_roles_on_byte_level_tokens():
    # SmolLM2's pieces for a typical response, decoded (digits are single tokens)
    tokens = ["7", " ×", " ", "8", " =", " ", "5", "6", ",", " ", "5", "6", " +", " ", "3",
              " =", " ", "5", "9", "\n", "Answer", ":", " ", "5", "9", "<|im_end|>"]
    roles = label_answer_roles(tokens)
    assert len(roles) == len(tokens)
    want = (["intermediate", "other", "other", "intermediate", "other", "other"]
            + ["intermediate"] * 2 + ["other", "other"] + ["intermediate"] * 2
            + ["other", "other", "intermediate", "other", "other"] + ["intermediate"] * 2
            + ["other", "format", "format", "other", "final_answer", "final_answer", "template"])
    assert roles == want
    assert set(roles) <= set(ANSWER_ROLES) <= set(ROLES)
    assert get_labeller("answer", "") is label_answer_roles
    assert get_labeller("testbed", "steps") is GRAMMARS["steps"].label_roles  # the toy's grammar


def test_roles_without_marker_and_only_last_marker_graded():
    assert label_answer_roles(["It", " is", " ", "5", "9"]) == ["other"] * 3 + ["intermediate"] * 2
    roles = label_answer_roles(["Answer", ":", " ", "1", "\n", "Answer", ":", " ", "2"])
    assert roles == ["other", "other", "other", "intermediate", "other",
                     "format", "format", "other", "final_answer"]
