"""The math grader on real answer forms, its time bound, and the grader registry."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlvr.testbed.digits import grade as grade_toy
from rlvr.testbed.graders import GRADERS, get_grader, grade_math, grade_math_many, last_boxed

CASES = [
    # (response, gold answer, expected grade)
    (r"So the answer is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}", 1),  # fraction, text around
    (r"\boxed{0.5}", "1/2", 1),  # decimal vs plain fraction gold
    (r"\boxed{\frac{2}{4}}", r"\frac{1}{2}", 1),  # unreduced fraction
    (r"\boxed{\frac{1}{3}}", r"\frac{1}{2}", 0),  # wrong fraction
    (r"\boxed{\sqrt{12}}", r"2\sqrt{3}", 1),  # radical, other form
    (r"\boxed{\frac{\sqrt3}{2}}", r"\frac{\sqrt{3}}{2}", 1),  # radical without braces
    (r"\boxed{\sqrt{3}}", r"2\sqrt{3}", 0),  # wrong radical
    (r"\boxed{[1,3)}", "[1, 3)", 1),  # half-open interval
    (r"\boxed{(1,3)}", "[1, 3)", 0),  # interval with the wrong bracket
    (r"\boxed{(-\infty, 2]}", r"(-\infty,2]", 1),  # unbounded interval
    (r"\boxed{\{3,2,1\}}", r"\{1,2,3\}", 1),  # set, other order
    (r"\boxed{\{1,2\}}", r"\{1,2,3\}", 0),  # set missing an element
    (r"We find $x = 3$. Hence \boxed{x=3}", "3", 1),  # equation answer
    ("The final answer is 42", "42", 1),  # no box: "final answer" pattern
    (r"First \boxed{41}, wait, no: \boxed{42}", "42", 1),  # the last box counts
    (r"First \boxed{42}, wait, no: \boxed{41}", "42", 0),
    (r"\boxed{x^{2}+2x+1}", "(x+1)^2", 1),  # expression, expanded
    ("I could not solve it.", "7", 0),  # no answer at all
    ("", "7", 0),  # empty response
    (r"\boxed{7", "7", 0),  # malformed: unclosed box
    (r"\boxed{\frac{1}{}}", r"\frac{1}{2}", 0),  # malformed LaTeX
    (r"\boxed{7}", r"\frac{", 0),  # malformed gold
    (r"\boxed{7}", 7, 1),  # integer gold (the toy task's type)
]


@pytest.mark.parametrize(("response", "answer", "expected"), CASES)
def test_grade_math_table(response, answer, expected):
    assert grade_math(response, answer) == expected


def test_grade_math_many_matches_one_by_one():
    responses, answers, expected = zip(*CASES, strict=True)
    assert grade_math_many(responses, answers) == list(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"a \boxed{1} b \boxed{\frac{1}{2}} c", r"\frac{1}{2}"),  # last one, nested braces
        (r"\fbox{3}", "3"),
        (r"\boxed{1", None),  # unclosed
        ("no box", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_timeout_bounds_a_runaway_input_and_grader_recovers():
    # sympy evaluates this tower exactly, in C; no signal can stop it, the worker is killed
    start = time.perf_counter()
    assert grade_math(r"\boxed{9^{9^{9^{9}}}}", "1", timeout_s=1.0) == 0
    assert time.perf_counter() - start < 10
    assert grade_math(r"\boxed{2}", "2") == 1  # a fresh worker takes over


def test_works_in_threads():
    # math-verify's own signal-based timeout raises outside the main thread; ours must not
    with ThreadPoolExecutor(max_workers=3) as pool:
        grades = list(pool.map(grade_math, [r"\boxed{1}", r"\boxed{2}", r"\boxed{4}"] * 2,
                               ["1", "2", "3"] * 2))
    assert grades == [1, 1, 0] * 2


def _grade_in_child(args):
    return grade_math(*args)


def test_works_in_daemonic_pool_workers():
    ctx = multiprocessing.get_context("forkserver")
    with ctx.Pool(1) as pool:
        assert pool.map(_grade_in_child, [(r"\boxed{\sqrt{4}}", "2"), ("nothing", "2")]) == [1, 0]


def test_registry():
    assert get_grader("toy") is grade_toy
    assert GRADERS["math"] is grade_math
    assert get_grader("toy")("sum 1 2 : chain 1 3 ; answer = 3", 3) == 1
    with pytest.raises(ValueError, match="sample.grader.*unknown grader 'gsm'"):
        get_grader("gsm", key="sample.grader")
