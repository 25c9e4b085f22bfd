"""Math grading on `math-verify`, with a time bound that holds in threads and worker processes.

`grade_math(response, answer)` parses the gold answer first (wrapped in `\\boxed{}` so bare LaTeX
such as `\\frac{1}{2}` or `[1, 3)` parses), then the response's last boxed answer (falling back to
math-verify's "final answer" / bare-expression patterns), and verifies them symbolically.
It returns 1 or 0 and never raises on malformed text.

Why a worker process: math-verify bounds its own time with `signal.alarm`, which raises outside
the main thread (Prefect runs `.submit()`ed tasks in threads), and no signal can interrupt a
sympy call stuck in C (e.g. a huge integer power). So grading runs with math-verify's timeouts
off, in one child Python process (a plain subprocess speaking JSON lines, so it works in threads,
in daemonic pool workers, and in scripts without a `__main__` guard); a call that overruns
`timeout_s`, or crashes the child, kills it and counts as 0. The child starts once (~2 s).

`GRADERS` maps the names `params.yaml` may use to grader functions: `toy` (the digit-sum
task), `math` (math-verify, boxed answers) and `answer` (the number on the last `Answer:` line of
natural text, `rlvr.testbed.answers`). `get_labeller` picks the token-role labeller the score
stage uses (`score.labeller`: the toy testbed's grammar, or the answer rule's roles for natural
text), and `ROLES` lists every role any of them gives (what the token gate accepts).
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from rlvr.testbed.answers import ANSWER_ROLES, grade_answer, label_answer_roles
from rlvr.testbed.digits import grade as grade_toy
from rlvr.testbed.grammars import ALL_ROLES, get_grammar

DEFAULT_TIMEOUT_S = 5.0

Grader = Callable[[str, "int | str"], int]

_STARTUP_TIMEOUT_S = 120.0  # python + sympy imports; generous on a busy 2-core machine


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}` in `text` (braces matched), or None."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None  # unclosed: no answer


def _verify(response: str, answer: str) -> int:
    """Gold first, then the prediction; math-verify's own (signal) timeouts are off. 1 or 0."""
    # imported here: sympy + latex2sympy take ~1 s to import, only graders that need them pay it
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns that timeouts are off
    gold = parse("\\boxed{" + answer + "}", parsing_timeout=None)
    if not gold:
        return 0
    pred_config = LatexExtractionConfig(
        boxed_match_priority=0,  # a boxed answer wins over "the answer is ..." patterns
        normalization_config=NormalizationConfig(
            basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="last",
        ),
    )
    # math-verify joins every \boxed{} of a response into one set; the answer is the last one
    boxed = last_boxed(response)
    target = response if boxed is None else "\\boxed{" + boxed + "}"
    pred = parse(target, extraction_config=[pred_config, ExprExtractionConfig()],
                 parsing_timeout=None)
    if not pred:
        return 0
    return int(verify(gold, pred, timeout_seconds=None))


class _Worker:
    """A child Python process that grades one JSON line at a time; killed when it overruns."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import rlvr.testbed.graders as m; m._serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        if self._read_line(_STARTUP_TIMEOUT_S) != "ready":
            self.kill()
            raise RuntimeError(
                f"grade_math: the grader worker ({sys.executable}) did not start; "
                "check that `python -c 'import rlvr.testbed.graders, math_verify'` works"
            )

    def _read_line(self, timeout_s: float) -> str | None:
        """The worker's next line, or None when it overran `timeout_s` or died."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        return line.strip() if line else None

    def grade(self, response: str, answer: str, timeout_s: float) -> int | None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps([response, answer]) + "\n")
        self.proc.stdin.flush()
        line = self._read_line(timeout_s)
        return None if line is None else int(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _serve() -> None:
    """Worker loop: read `[response, answer]` JSON lines, write one grade per line."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    _verify("0", "0")  # import sympy & co before saying ready
    out.write("ready\n")
    for line in sys.stdin:
        response, answer = json.loads(line)
        out.write(f"{_verify(response, answer)}\n")


_worker: _Worker | None = None
_worker_lock = threading.Lock()


def grade_math_many(
    responses: Sequence[str], answers: Sequence[int | str], timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[int]:
    """Grade each response against its gold answer: 1 or 0 per row, at most ~`timeout_s` each."""
    global _worker
    assert len(responses) == len(answers), "one answer per response"
    grades = []
    with _worker_lock:  # one exchange at a time: the protocol is one line in, one line out
        for response, answer in zip(responses, answers, strict=True):
            if _worker is None:
                _worker = _Worker()
            grade = _worker.grade(str(response), str(answer), timeout_s)
            if grade is None:  # overran or crashed on this input: it counts as wrong
                _worker.kill()
                _worker = None
            grades.append(grade or 0)
    return grades


def grade_math(response: str, answer: int | str, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """1 if the response's final (boxed) answer equals `answer` mathematically, else 0."""
    return grade_math_many([response], [answer], timeout_s)[0]


GRADERS: dict[str, Grader] = {"toy": grade_toy, "math": grade_math, "answer": grade_answer}
LABELLERS = ("testbed", "answer")
ROLES = tuple(dict.fromkeys(ALL_ROLES + ANSWER_ROLES))


def get_labeller(name: str, testbed: str) -> Callable[[Sequence[str]], list[str]]:
    """Token-role labeller `name` (`score.labeller`): `testbed` is the grammar of toy testbed
    `testbed` (`task.testbed`), `answer` the answer rule's roles for natural text."""
    if name == "answer":
        return label_answer_roles
    return get_grammar(testbed).label_roles


def get_grader(name: str, key: str = "sample.grader") -> Grader:
    """The grader registered under `name` (the one registry every grading stage uses)."""
    if name not in GRADERS:
        raise ValueError(
            f"params.yaml `{key}`: unknown grader {name!r}; use one of {sorted(GRADERS)}"
        )
    return GRADERS[name]
