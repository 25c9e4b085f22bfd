"""rlvr.progress: log lines at intervals and at the end, through the standard `rlvr` logger."""

from __future__ import annotations

import logging

from rlvr.progress import Progress


def test_line_format():
    cases = [
        # (done, total, seconds, notes) -> line
        ((50, 200, 10.0, {}), "pretrain: 50/200 step (25%), 5 step/s, 10 s, eta 30 s"),
        ((200, 200, 40.0, {"loss": "1.234"}), "pretrain: 200/200 step (100%), 5 step/s, 40 s, "
                                              "loss=1.234"),
        ((7, None, 2.0, {}), "pretrain: 7 step, 3.5 step/s, 2 s"),  # unknown total: no eta
        ((0, 200, 0.0, {}), "pretrain: 0/200 step (0%), 0 step/s, 0 s"),
    ]
    got = []
    for (done, total, seconds, notes), _ in cases:
        steps = Progress([], "pretrain", total, "step")
        steps.notes.update(notes)
        got.append(steps.line(done, seconds))
    assert got == [want for _, want in cases]


def test_logs_at_intervals_and_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="rlvr")
    steps = Progress(range(5), "grpo", 5, "step", every_s=0.0)  # every step is past the interval
    for _ in steps:
        steps.note(reward="0.50")
    lines = [r.getMessage() for r in caplog.records if r.name == "rlvr.progress"]
    assert len(lines) == 6  # one per step, then the final line
    assert lines[-1].startswith("grpo: 5/5 step (100%)") and lines[-1].endswith("reward=0.50")

    caplog.clear()
    assert list(Progress(range(3), "quiet", 3, enabled=False, every_s=0.0)) == [0, 1, 2]
    assert list(Progress(range(3), "slow", 3)) == [0, 1, 2]  # 30 s interval: only the last line
    assert [r.getMessage()[:13] for r in caplog.records] == ["slow: 3/3 it "]
