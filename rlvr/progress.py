"""Progress of the long loops (training steps, sampling, scoring and cross-sampling batches).

`Progress` is a tqdm bar where a terminal can show one, plus an INFO line on the
`rlvr.progress` logger at most every `every_s` seconds and at the end. The library never
imports Prefect: stage runs give the `rlvr` logger level INFO, and Prefect's `extra_loggers`
setting (pyproject.toml `[tool.prefect.logging]`) sends its records to the run's logs, however
the stage was started. Called directly, the lines follow the caller's logging configuration.

    steps = Progress(range(n), "pretrain", total=n, unit="step", enabled=progress)
    for step in steps:
        ...
        steps.note(loss=f"{loss:.3f}")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
EVERY_S = 30.0  # a 15-minute stage leaves ~30 lines in its log, a 10-second one just the last

log = logging.getLogger("rlvr.progress")


class Progress(Generic[T]):
    """Iterate `items`, reporting progress when `enabled`."""

    def __init__(self, items: Iterable[T], desc: str, total: int | None = None,
                 unit: str = "it", enabled: bool = True, every_s: float = EVERY_S) -> None:
        self.items, self.desc, self.total, self.unit = items, desc, total, unit
        self.enabled, self.every_s = enabled, every_s
        self.notes: dict[str, str] = {}
        # disable=None: tqdm turns itself off when stderr is not a terminal (a pipe under DVC)
        self.bar = tqdm(items, desc=desc, total=total, unit=unit,
                        disable=None if enabled else True)

    def note(self, **values: str) -> None:
        """Values shown after the bar and at the end of the next log line (e.g. the loss)."""
        self.notes.update(values)
        self.bar.set_postfix(values)

    def __iter__(self) -> Iterator[T]:
        start = last = time.monotonic()
        done = 0
        with self.bar:
            for item in self.bar:
                yield item
                done += 1
                now = time.monotonic()
                if self.enabled and now - last >= self.every_s:
                    log.info("%s", self.line(done, now - start))
                    last = now
        if self.enabled:
            log.info("%s", self.line(done, time.monotonic() - start))

    def line(self, done: int, seconds: float) -> str:
        """`pretrain: 120/200 step (60%), 4.1 step/s, 29 s, eta 19 s, loss=1.234`."""
        rate = done / seconds if seconds > 0 else 0.0
        total, unit = self.total, self.unit
        count = f"{done}/{total} {unit} ({done / total:.0%})" if total else f"{done} {unit}"
        eta = f", eta {(total - done) / rate:.0f} s" if total and rate and done < total else ""
        notes = "".join(f", {k}={v}" for k, v in self.notes.items())
        return f"{self.desc}: {count}, {rate:.3g} {unit}/s, {seconds:.0f} s{eta}{notes}"
