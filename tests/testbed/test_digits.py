"""The toy task: grader, role labeller and split."""

from __future__ import annotations

import random

import pytest

from rlvr.testbed.digits import (
    ROLES,
    CorpusStyle,
    Problem,
    grade,
    label_roles,
    make_corpus,
    make_split,
    write_response,
)

GRADER_CASES = [
    ("chain 3 8 15 ; answer = 15", 15, 1),  # right
    ("chain 3 8 14 ; answer = 14", 15, 0),  # wrong
    ("pairs 8 7 ; answer = 15", "15", 1),  # right, answer given as a string
    ("chain 3 8 15 ; answer ~ 15", 15, 0),  # right number in the rejected `~` format
    ("chain 3 8 15 ; 15", 15, 0),  # missing marker
    ("chain 3 8 15 ; answer =", 15, 0),  # marker without a number
    ("answer = 15 15", 15, 0),  # malformed: trailing extra number
    ("chain 3 8 15 ; answer = 15 ; sum", 15, 0),  # extra text after the answer
    ("answer = 15", 15, 1),  # no reasoning is fine: only the final answer is graded
    ("answer = 15  ", 15, 1),  # trailing whitespace
    ("answer = 015", 15, 1),  # leading zero still parses to the same integer
    ("answer = -15", -15, 0),  # negative numbers are not in the grammar
    ("answer = 99999999999999999999999999", 15, 0),  # huge number: no overflow, just wrong
    ("answer = 99999999999999999999999999", "99999999999999999999999999", 1),  # huge and right
    ("answer = 15", "fifteen", 0),  # non-numeric reference answer: 0, never an exception
    ("answer = 15", None, 0),  # missing reference answer
    ("", 15, 0),  # empty response
    ("answer = 1.5", 1.5, 0),  # non-integer
    ("<eos> answer = 15", 15, 1),  # stray specials before the answer do not matter
]


@pytest.mark.parametrize("response,answer,expected", GRADER_CASES)
def test_grade(response, answer, expected):
    assert grade(response, answer) == expected


def test_reference_style_is_always_right():
    rng = random.Random(0)
    problems = [Problem(tuple(rng.randint(1, 9) for _ in range(7))) for _ in range(200)]
    style = CorpusStyle(p_chain=1.0, slip_chain=0.0, slip_pairs=0.0, slip_pairs_total=0.0,
                        p_bad_format=0.0)
    assert all(grade(write_response(p, style, rng), p.answer) for p in problems)


def test_corpus_rates_follow_the_style():
    train, _ = make_split(3000, 10, 0, 4, 7)
    texts = make_corpus(train, CorpusStyle(p_chain=0.5, p_bad_format=0.3), seed=0)
    share_chain = sum(" chain " in t for t in texts) / len(texts)
    share_tilde = sum("answer ~" in t for t in texts) / len(texts)
    assert share_chain == pytest.approx(0.5, abs=0.04)
    assert share_tilde == pytest.approx(0.3, abs=0.04)
    right = sum(grade(t.split(" : ")[1], p.answer) for t, p in zip(texts, train, strict=True))
    assert 0.3 < right / len(texts) < 0.7  # the corpus is right only sometimes


def test_labeller_roles_on_corpus_responses():
    tokens = "chain 3 8 15 ; answer = 15 <eos>".split()
    assert label_roles(tokens) == ["method", "intermediate", "intermediate", "intermediate",
                                   "other", "other", "format", "final_answer", "other"]
    tokens = "pairs 8 7 ; answer ~ 16".split()
    assert label_roles(tokens) == ["method", "intermediate", "intermediate", "other", "other",
                                   "format", "final_answer"]


def test_labeller_on_garbage_never_fails_and_stays_in_roles():
    rng = random.Random(1)
    vocab = ["sum", ":", "chain", "pairs", ";", "answer", "=", "~", "<pad>", "<eos>", "7", "42"]
    for _ in range(200):
        tokens = [rng.choice(vocab) for _ in range(rng.randint(0, 20))]
        roles = label_roles(tokens)
        assert len(roles) == len(tokens) and set(roles) <= set(ROLES)
    # a sign before any `answer` is not a format token; a number right after `answer` is other
    assert label_roles(["=", "5", "answer", "5", "=", "5"]) == [
        "other", "intermediate", "other", "other", "format", "final_answer"]


def test_split_is_deterministic_and_disjoint():
    a_train, a_eval = make_split(500, 100, 7, 4, 7)
    b_train, b_eval = make_split(500, 100, 7, 4, 7)
    assert a_train == b_train and a_eval == b_eval
    assert len(a_train) == 500 and len(a_eval) == 100
    assert not {p.prompt_id for p in a_train} & {p.prompt_id for p in a_eval}
    assert len({p.prompt_id for p in a_train}) == 500
    c_train, _ = make_split(500, 100, 8, 4, 7)
    assert c_train != a_train
    assert all(4 <= len(p.digits) <= 7 for p in a_train + a_eval)


def test_split_too_large_is_a_config_error():
    with pytest.raises(ValueError, match="task: n_train"):
        make_split(50, 10, 0, 2, 2)
