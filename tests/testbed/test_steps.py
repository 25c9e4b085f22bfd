"""The long testbed's grammar: solutions, slips and checks, role labels, and the registry."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rlvr.testbed.digits import REVERSE_STYLE, CorpusStyle, Problem, grade, make_split
from rlvr.testbed.grammars import GRAMMARS, get_grammar
from rlvr.testbed.steps import ROLES, label_roles, write_response

CLEAN = CorpusStyle(slip_chain=0.0, slip_pairs=0.0, slip_pairs_total=0.0, p_bad_format=0.0)

WRITTEN = [  # (digits, style, seed, expected response); one comment per case
    ((3, 5, 7, 2), CorpusStyle(p_chain=1.0, p_check=0.0, slip_chain=0.0, p_bad_format=0.0), 0,
     "chain ; step 1 : 3 + 5 = 8 ; step 2 : 8 + 7 = 15 ; step 3 : 15 + 2 = 17 ; "
     "answer = 17"),  # running totals, no check
    ((3, 5, 7), CorpusStyle(p_chain=0.0, p_check=1.0, slip_pairs=0.0, slip_pairs_total=0.0,
                            p_bad_format=0.0), 0,
     "pairs check ; step 1 : 3 + 5 = 8 ok ; step 2 : 8 + 7 = 15 ok ; answer = 15"),  # odd digit
    ((3, 5, 7, 2), REVERSE_STYLE, 0,
     "back check ; step 1 : 2 + 7 = 9 ok ; step 2 : 9 + 5 = 14 ok ; step 3 : 14 + 3 = 17 ok ; "
     "answer = 17"),  # the SFT control's style: from the last digit, every step checked
    ((9, 9, 9, 9), CorpusStyle(p_chain=0.0, p_check=0.0, slip_pairs=0.0, slip_pairs_total=0.0,
                               p_bad_format=0.0), 0,
     "pairs ; step 1 : 9 + 9 = 18 ; step 2 : 9 + 9 = 18 ; step 3 : 18 + 18 = 36 ; "
     "answer = 36"),  # pair sums, then their sum
]


@pytest.mark.parametrize("digits,style,seed,expected", WRITTEN)
def test_write_response(digits, style, seed, expected):
    assert write_response(Problem(digits), style, random.Random(seed)) == expected


def test_checked_slips_are_fixed_and_unchecked_ones_propagate():
    rng = random.Random(0)
    problems = [Problem(tuple(rng.randint(1, 9) for _ in range(6))) for _ in range(400)]
    slippy = dict(slip_chain=0.3, slip_pairs=0.3, slip_pairs_total=0.3, p_bad_format=0.0)
    checked = [write_response(p, CorpusStyle(p_check=1.0, **slippy), rng) for p in problems]
    unchecked = [write_response(p, CorpusStyle(p_check=0.0, **slippy), rng) for p in problems]
    assert all(grade(t, p.answer) for t, p in zip(checked, problems, strict=True))
    assert sum(" fix " in t for t in checked) > 200  # slips happened and were repaired
    wrong = np.mean([1 - grade(t, p.answer) for t, p in zip(unchecked, problems, strict=True)])
    assert wrong > 0.6
    for text in checked:  # a fix writes the right sum of the restated operands
        words = text.split()
        for i in [i for i, w in enumerate(words) if w == "fix"]:
            a, b, fixed = int(words[i - 5]), int(words[i - 3]), int(words[i + 1])
            assert fixed == a + b and int(words[i - 1]) != fixed


def test_corpus_is_long_and_its_forks_follow_the_style():
    train, _ = make_split(3000, 10, 0, 4, 6)
    texts = GRAMMARS["steps"].corpus(train, CorpusStyle(p_chain=0.5, p_check=0.5,
                                                        p_bad_format=0.3), seed=0)
    lengths = np.array([len(t.split()) + 1 for t in texts])  # + EOS
    assert 38 < lengths.mean() < 50 and lengths.min() >= 29
    for share, expected in [(np.mean([t.startswith("chain") for t in texts]), 0.5),
                            (np.mean([t.split()[1] == "check" for t in texts]), 0.5),
                            (np.mean(["answer ~" in t for t in texts]), 0.3)]:
        assert share == pytest.approx(expected, abs=0.04)


ROLE_CASES = [  # (response, expected roles); one comment per case
    ("chain check ; step 1 : 3 + 5 = 9 fix 8 ; answer = 8",
     ["method", "verify", "other", "other", "other", "other", "operand", "other", "operand",
      "other", "intermediate", "check", "intermediate", "other", "other", "format",
      "final_answer"]),  # a checked slip and its fix
    ("pairs ; step 1 : 3 + 5 = 8 ; answer ~ 8",
     ["method", "verify", "other", "other", "other", "operand", "other", "operand", "other",
      "intermediate", "other", "other", "format", "final_answer"]),  # no check: `;` is the choice
    ("answer = 8 8", ["other", "format", "final_answer", "final_answer"]),  # broken grammar
    ("ok 7 = 7", ["check", "operand", "other", "intermediate"]),  # numbers without an answer
    ("", []),
]


@pytest.mark.parametrize("response,expected", ROLE_CASES)
def test_label_roles(response, expected):
    roles = label_roles(response.split())
    assert roles == expected and set(roles) <= set(ROLES)


def test_registry_names_the_key_for_an_unknown_testbed():
    assert get_grammar("steps").label_roles is label_roles
    with pytest.raises(ValueError, match=r"params.yaml `task.testbed`: unknown testbed 'long'"):
        get_grammar("long")
