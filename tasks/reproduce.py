"""Prefect tasks that run the DVC pipeline: stage runs become children of this flow run."""

from __future__ import annotations

import contextvars
import re
import threading
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.context import TaskRunContext

from rlvr import dvc, stagehost
from rlvr.config import load_params
from rlvr.layout import DATA_ROOT, Layout
from rlvr.sections import full_params
from rlvr.study import load_study
from tasks.linking import child_env
from tasks.retry import TRANSIENT_RETRIES

# a stage's own Prefect console line (`12:00:01.234 | INFO | ...`): its run has it already
PREFECT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| ")


@task
def plan_command(targets: list[str], params: dict[str, Any], force: bool, repo: str) -> list[str]:
    """The dvc command for these targets and parameter overrides, validated against every knob
    of the study (a workspace's params.yaml holds only what differs from its family)."""
    own = load_params(f"{repo}/params.yaml")
    known = full_params(load_study(f"{repo}/params.yaml"), Layout(Path(repo) / DATA_ROOT)) \
        if "family" in own else own  # any DVC project runs; a study knows all its knobs
    overrides = dvc.param_overrides(known, params, own)
    return dvc.dvc_command(targets, overrides, force)


@task(**TRANSIENT_RETRIES)
def run_dvc(command: list[str], repo: str, host: bool = True) -> list[str]:
    """Run one dvc command, logging DVC's lines; returns its output.

    With `host`, stages run in this process (`rlvr.stagehost`) when it is the main thread
    (signal-based timeouts need it); otherwise each stage is a process of its own.
    """
    logger = get_run_logger()
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if not PREFECT_LINE.match(line):
            logger.info(line)

    hosted = host and threading.current_thread() is threading.main_thread()
    logger.info("stages run in this process" if hosted else "each stage runs in its own process")
    dvc.run_dvc(command, repo, on_line, env=child_env(),
                host=_run_hosted_stage if hosted else None)
    return lines


def _run_hosted_stage(request: stagehost.Request) -> stagehost.Reply:
    """Run a stage outside this task's context: a flow called inside a task would log through
    the task's logger, so the stage's lines would land in this task instead of its own run."""

    def call() -> stagehost.Reply:
        TaskRunContext.__var__.set(None)
        return stagehost.run_module(request)

    return contextvars.copy_context().run(call)
