"""Stage runs as children of the `reproduce` run that caused them, tagged with commit and exp.

A stage's `__main__` calls `run_stage(flow, ...)` instead of `flow(...)`:
- hosted in the reproduce process (`rlvr.stagehost`), the flow runs as a native subflow of it;
- in a stage process that `reproduce` started through DVC (RLVR_PARENT_FLOW_RUN_ID, set by
  `child_env`), it runs as a child created the way Prefect creates a subflow: a tracking task
  run in the parent, then a flow run with `parent_task_run_id`; the server copies the child's
  states onto that task, so the UI draws the stage under its parent, failed if it failed;
- anywhere else it is a plain flow run.
In each case the run is named after the DVC stage, tagged `commit:<sha>` (plus `dirty`),
`exp:<name>` under `dvc exp run` and `stage:<name>`, and the library's progress lines reach it.

Before any of that, `run_stage` runs the stage's `preflight` (the library's checks of every
input): a bad input stops the stage with one line before a Prefect server exists. A stage with
no server to report to (no PREFECT_API_URL, not hosted) gets one from `rlvr.server`, which dies
with the stage however it ends (kill -9 included), where Prefect's own temporary server would
outlive a killed process. The library's check failures found inside a flow reach the console
as the one `error:` line only: Prefect's tracebacks and state lines of them are kept off the
console (`QuietChecks`) but still sent to the API, so the run's state and logs record them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable
from typing import Any

from prefect import Flow, Task, tags
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TagsContext
from prefect.flow_engine import run_flow
from prefect.logging.configuration import ensure_logging_setup
from prefect.logging.handlers import APILogWorker, PrefectConsoleHandler
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    temporary_settings,
)
from prefect.settings.context import get_current_settings
from prefect.states import Pending
from prefect.utilities.callables import get_call_parameters

from rlvr.config import is_expected
from rlvr.server import ensure_server

ENV_PARENT = "RLVR_PARENT_FLOW_RUN_ID"


def stage_name(default: str) -> str:
    """The DVC stage being run (`weighted_run@baseline`), else `default` (the flow's name)."""
    return os.environ.get("DVC_STAGE") or default


def run_tags(repo: str = ".") -> list[str]:
    """`commit:<short sha>`, `dirty` if tracked files changed, `exp:<name>` under dvc exp run."""
    found = []
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, text=True,
                          capture_output=True)
    if head.returncode == 0:
        found.append(f"commit:{head.stdout.strip()}")
        # dvc.lock changes with every run, so only other tracked files make the tree dirty
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                 ".", ":!dvc.lock"], cwd=repo, text=True, capture_output=True)
        if status.stdout.strip():
            found.append("dirty")
    if os.environ.get("DVC_EXP_NAME"):  # DVC sets it for stage commands of `dvc exp run`
        found.append(f"exp:{os.environ['DVC_EXP_NAME']}")
    return found


def tag_current_run(extra: list[str]) -> None:
    """Add tags to the running flow run (a deployment's run too, which no `tags()` reaches)."""
    ctx = FlowRunContext.get()
    assert ctx is not None and ctx.flow_run is not None, "call inside a flow run"
    ctx.flow_run.tags = list(dict.fromkeys([*ctx.flow_run.tags, *extra]))
    ctx.client.update_flow_run(ctx.flow_run.id, tags=ctx.flow_run.tags)


def child_env() -> dict[str, str]:
    """Env vars under which stage processes started from this flow run become its children."""
    ctx = FlowRunContext.get()
    url = get_current_settings().api.url
    if ctx is None or ctx.flow_run is None or not url:
        return {}  # no server a stage process could reach: its runs stay separate
    return {ENV_PARENT: str(ctx.flow_run.id), "PREFECT_API_URL": str(url)}


class QuietChecks(logging.Filter):
    """On the console only: drop Prefect's records of a failed input check (`is_expected`):
    the task's and flow's tracebacks, then their one-line "Finished in state Failed(...)" that
    quote it. The stage prints the check's message itself, once; the API still gets them."""

    def __init__(self) -> None:
        super().__init__()
        self.quoted: set[str] = set()  # first lines of the checks that failed

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        if err is not None and is_expected(err):
            self.quoted.add(str(err).splitlines()[0] if str(err) else type(err).__name__)
            return False
        if self.quoted and record.name.startswith("prefect."):
            return not any(q in record.getMessage() for q in self.quoted)
        return True


def quiet_checks() -> None:
    """Put `QuietChecks` on Prefect's console handlers (once per process)."""
    ensure_logging_setup()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, QuietChecks) for f in handler.filters):
            handler.addFilter(QuietChecks())


def run_stage(flow: Flow, *args: Any, preflight: Callable[[], Any] | None = None,
              **kwargs: Any) -> Any:
    """Call `flow(*args, **kwargs)` as this pipeline stage's run (see the module docstring),
    after `preflight()`, the library's checks of the stage's inputs."""
    if preflight is not None:
        preflight()  # a bad input stops here: no server started, nothing touched
    quiet_checks()
    if FlowRunContext.get() is None and not get_current_settings().api.url:
        # no server to report to: one that dies with this process (not Prefect's temporary
        # server, which a `kill -9` leaves running)
        with ensure_server() as url, temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                return _interruptible(lambda: _run_stage(flow, args, kwargs))
            finally:  # the run's last records (its failure) reach the server before it stops
                APILogWorker.drain_all(timeout=5)
    return _interruptible(lambda: _run_stage(flow, args, kwargs))


def _interruptible(call: Callable[[], Any]) -> Any:
    """`call()`, ending in KeyboardInterrupt when a Ctrl-C came during it: Prefect's engine
    drops one that lands after the flow's code has finished, and the stage then exited 0."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
        return call()  # a hosted stage (the host owns the signal), or Ctrl-C ignored
    hits: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:
        hits.append(signum)
        if callable(previous):
            previous(signum, frame)  # Python's default raises KeyboardInterrupt here
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        result = call()
    finally:
        signal.signal(signal.SIGINT, previous)
    if hits:
        raise KeyboardInterrupt
    return result


def _run_stage(flow: Flow, args: tuple, kwargs: dict) -> Any:
    # Prefect gives its API handler to `rlvr` (extra_loggers) but no level: INFO is dropped
    logging.getLogger("rlvr").setLevel(logging.INFO)
    stage = stage_name(flow.name)
    flow = flow.with_options(flow_run_name=stage)
    parent = os.environ.get(ENV_PARENT)
    # a heartbeat thread's join costs up to 1 s per run; the local server acts on none
    with (temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
          tags(*run_tags(), f"stage:{stage}")):
        if parent and FlowRunContext.get() is None:
            return _run_as_child(flow, uuid.UUID(parent), stage, args, kwargs)
        return flow(*args, **kwargs)


def _run_as_child(flow: Flow, parent: uuid.UUID, stage: str, args: tuple, kwargs: dict) -> Any:
    """What `Flow.__call__` does for a subflow, with the parent in another process."""
    params = get_call_parameters(flow.fn, args, kwargs)
    with get_client(sync_client=True) as client:
        tracker = client.create_task_run(
            task=Task(name=flow.name, fn=flow.fn), flow_run_id=parent, name=stage,
            dynamic_key=uuid.uuid4().hex[:12], state=Pending())
        run = client.create_flow_run(
            flow, name=stage, parameters=flow.serialize_parameters(params), state=Pending(),
            parent_task_run_id=tracker.id, tags=sorted(TagsContext.get().current_tags))
    return run_flow(flow, flow_run=run, parameters=params)
