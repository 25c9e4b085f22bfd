"""Decorator-level retry policy: retry a task only when it failed for a transient reason.

Use it on every @task that touches the filesystem, a subprocess or the network:

    @task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_transient)

A bad input (ValueError, FileNotFoundError, KeyError, ...) is never retried, so it fails the flow
at once with the library's message.
"""

from __future__ import annotations

import errno
from typing import Any

from prefect.client.schemas.objects import TaskRun
from prefect.states import State

# errnos that say "try again later", not "your input is wrong"
TRANSIENT_ERRNOS = frozenset({
    errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.EIO, errno.ETIMEDOUT, errno.ECONNRESET,
    errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.ENETUNREACH, errno.EHOSTUNREACH,
    errno.ESTALE, errno.EMFILE, errno.ENFILE,
})


def is_transient(exc: BaseException | None) -> bool:
    """True for connection, timeout and retryable-OS errors, anywhere in the cause chain."""
    while exc is not None:
        if isinstance(exc, ConnectionError | TimeoutError):
            return True
        if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
            return True
        exc = exc.__cause__
    return False


def retry_transient(task: Any, task_run: TaskRun, state: State) -> bool:
    """`retry_condition_fn` for Prefect tasks: retry only if the failure is transient."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


TRANSIENT_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_condition_fn": retry_transient,
}
