"""Orchestration layer: retry policy, runner settings, the dvc command plan, prefect.yaml in step
with dvc.yaml, and the reproduce flow on a real three-stage DVC repository (fail, fix, resume)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.testing.utilities import prefect_test_harness

from flows.reproduce import reproduce
from rlvr import dvc
from rlvr.config import from_section, load_params
from tasks.retry import TRANSIENT_RETRIES, is_transient
from tasks.runners import RunnerParams, make_runner

ROOT = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).parent / "dvc")


@pytest.fixture(scope="module")
def prefect_backend():
    with prefect_test_harness(server_startup_timeout=180):
        yield


def test_is_transient():
    wrapped = RuntimeError("while reading shard 3")
    wrapped.__cause__ = ConnectionResetError("peer reset")
    cases = [
        (ConnectionRefusedError(), True),  # scheduler not up yet
        (TimeoutError(), True),
        (OSError(errno.EBUSY, "busy"), True),
        (OSError(errno.EIO, "nfs hiccup"), True),
        (wrapped, True),  # transient cause under a wrapper
        (FileNotFoundError(errno.ENOENT, "no such file"), False),  # bad input path
        (PermissionError(errno.EACCES, "denied"), False),
        (ValueError("params.yaml `task.n_train`: must be positive"), False),
        (KeyError("column"), False),
        (None, False),
    ]
    assert [is_transient(exc) for exc, _ in cases] == [want for _, want in cases]


def test_retries_transient_failures_only(prefect_backend, tmp_path):
    calls = tmp_path / "calls.txt"

    @task(**(TRANSIENT_RETRIES | {"retry_delay_seconds": 0}))
    def flaky(kind: str) -> str:
        with calls.open("a") as f:
            f.write(kind + "\n")
        if kind == "network" and calls.read_text().count("network") < 2:
            raise ConnectionResetError("connection reset by peer")
        if kind == "bad":
            raise ValueError("params.yaml `sample.n_prompts`: must be >= 1; use e.g. 64")
        return "ok"

    @flow
    def run(kind: str) -> str:
        return flaky(kind)

    assert run("network") == "ok"
    assert calls.read_text().count("network") == 2  # failed once, retried once
    with pytest.raises(ValueError, match="sample.n_prompts"):
        run("bad")
    assert calls.read_text().count("bad") == 1  # a bad input is never retried


def test_runner_config_and_make_runner():
    params = load_params(ROOT / "params.yaml")
    cfg = from_section(RunnerParams, params, "runner")
    assert cfg.kind == "thread"  # the committed default runs anywhere
    assert isinstance(make_runner(cfg), ThreadPoolTaskRunner)
    from prefect_dask import DaskTaskRunner
    from prefect_ray import RayTaskRunner

    dask = make_runner(RunnerParams(kind="dask", address="tcp://10.0.0.5:8786"))
    assert isinstance(dask, DaskTaskRunner) and dask.address == "tcp://10.0.0.5:8786"
    assert isinstance(make_runner(RunnerParams(kind="ray", address="auto")), RayTaskRunner)
    for bad, key in [({"kind": "spark"}, "runner.kind"), ({"n_workers": 0}, "runner.n_workers"),
                     ({"address": "tcp://x:1"}, "runner.address")]:
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            from_section(RunnerParams, {"runner": bad}, "runner")


def test_param_overrides_and_command():
    current = {"task": {"seed": 0, "n_train": 6000}, "sample": {"top_p": 1.0, "grid": [1, 2]}}
    cases = [
        ({}, []),  # nothing requested: params.yaml as is
        ({"task": {}, "sample": {}}, []),  # the deployments' empty sections
        ({"task": {"seed": 0}}, []),  # same value: no override
        ({"task": {"seed": 3}}, ["task.seed=3"]),
        ({"sample": {"top_p": 0.9, "grid": [4]}}, ["sample.grid=[4]", "sample.top_p=0.9"]),
    ]
    assert [dvc.param_overrides(current, req) for req, _ in cases] == [w for _, w in cases]
    with pytest.raises(ValueError, match=r"task\.sede.*task\.n_train"):
        dvc.param_overrides(current, {"task": {"sede": 1}})
    with pytest.raises(ValueError, match="nosuch"):
        dvc.param_overrides(current, {"nosuch": {}})
    # a key params.yaml does not hold (a workspace holds only what differs): DVC adds it
    assert dvc.param_overrides(current, {"task": {"seed": 3}}, own={"task": {}}) == [
        "+task.seed=3"]
    assert dvc.dvc_command([], []) == ["dvc", "repro"]
    assert dvc.dvc_command(["score"], ["task.seed=3"], force=True) == [
        "dvc", "exp", "run", "-S", "task.seed=3", "--force", "score"]


def test_failure_reason_picks_the_library_message():
    lines = ["Running stage 'prepare':", "Traceback (most recent call last):", "  File ...",
             "ValueError: params.yaml `task.n_train`: must be positive; set both to at least 1",
             "ERROR: failed to reproduce 'prepare': failed to run: python -m flows.prepare"]
    assert dvc.failure_reason(lines).startswith("ValueError: params.yaml `task.n_train`")
    assert dvc.failure_reason(lines[-1:]).startswith("ERROR: failed to reproduce")
    assert dvc.experiment_name(["Reproducing experiment 'x'", "Ran experiment(s): bluff-wale",
                                "Experiment results have been applied"]) == "bluff-wale"
    assert dvc.experiment_name(lines) is None
    # a stage's own one-line error (what `one_line_errors` prints) wins over a traceback
    ours = "error: params.yaml `task.n_train`: 'x' is not a whole number"
    assert dvc.failure_reason(lines[:1] + [ours] + lines[1:]) == ours


def test_prefect_yaml_has_a_deployment_per_stage():
    """prefect.yaml is generated with the dvc.yaml files (`rlvr pipeline`; test_pipeline checks
    it is not stale): the toy workspace's deployments, then real/'s."""
    stages = dvc.read_stages(ROOT / "dvc.yaml")
    real = dvc.read_stages(ROOT / "real" / "dvc.yaml")
    fresh = (ROOT / "prefect.yaml").read_text()
    doc = yaml.safe_load(fresh)
    names = [d["name"] for d in doc["deployments"]]
    assert names == ["default", *stages, "real", *(f"real-{name}" for name in real)]
    assert all(d["parameters"]["repo"] == "real" for d in doc["deployments"][len(stages) + 1:])
    assert all(d["work_pool"]["name"] == dvc.WORK_POOL for d in doc["deployments"])
    assert "auth" not in fresh.lower() and "password" not in fresh.lower()  # no secrets


@pytest.mark.parametrize("pipeline", ["dvc.yaml", "real/dvc.yaml"])
def test_every_stage_runs_its_flow(pipeline):
    """`python -m flows <stage>`: flows/__main__.py hosts it or runs `python -m flows.<stage>`."""
    for name, stage in dvc.read_stages(ROOT / pipeline).items():
        stage = stage.get("do", stage)  # a foreach stage's command is in its `do` body
        module = dvc.stage_module(stage["cmd"])
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), f"stage {name}: no {module}"


# A three-stage toy pipeline: `make` reads toy.n, `double` and `count` read its output. Each stage
# is a flow started like ours (`run_stage`) in a process of its own, and appends to runs.log so
# the test sees which stages actually ran.
TOY_STAGE = """\
import json, sys, yaml
from pathlib import Path
from prefect import flow
from tasks.linking import run_stage

@flow(name="toy")
def toy(name: str) -> None:
    with open("runs.log", "a") as f:
        f.write(name + "\\n")
    n = yaml.safe_load(open("params.yaml"))["toy"]["n"]
    if name == "make":
        if n < 1:
            raise ValueError(f"params.yaml `toy.n`: must be >= 1, got {n}; use a positive count")
        Path("out").mkdir(exist_ok=True)
        Path("out/make.json").write_text(json.dumps(list(range(n))))
        return
    if name == "double" and Path("crash").exists():
        raise RuntimeError("simulated crash")
    values = json.loads(Path("out/make.json").read_text())
    result = [2 * v for v in values] if name == "double" else len(values)
    Path(f"out/{name}.json").write_text(json.dumps(result))

run_stage(toy, sys.argv[1])
"""


def _toy_repo(path: Path) -> Path:
    path.mkdir()
    (path / "stage.py").write_text(TOY_STAGE)
    (path / "params.yaml").write_text("toy:\n  n: 3\n")
    stages = {"make": {"cmd": "python stage.py make", "deps": ["stage.py"],
                       "params": ["toy.n"], "outs": ["out/make.json"]}}
    for name in ("double", "count"):
        stages[name] = {"cmd": f"python stage.py {name}", "deps": ["stage.py", "out/make.json"],
                        "outs": [f"out/{name}.json"]}
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (path / ".gitignore").write_text("runs.log\ncrash\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run([DVC, "init", "-q"], cwd=path, check=True)
    subprocess.run([DVC, "config", "core.analytics", "false"], cwd=path, check=True)
    subprocess.run(git + ["add", "-A"], cwd=path, check=True)
    subprocess.run(git + ["commit", "-qm", "toy"], cwd=path, check=True)
    return path


def _ran(repo: Path) -> list[str]:
    log = repo / "runs.log"
    ran = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return ran


def _stage_runs() -> dict[str, tuple[str, str, str]]:
    """The latest reproduce run's child runs: name -> (state, message, tracking task's state)."""
    with get_client(sync_client=True) as client:
        (parent,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["reproduce"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
        tasks = {t.id: t for t in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[parent.id])))}
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])))
    return {c.name: (c.state_name, c.state.message, tasks[c.parent_task_run_id].state_name)
            for c in children}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_reproduce_fails_clearly_then_resumes(prefect_backend, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the toy stages import tasks.linking
    repo = str(_toy_repo(tmp_path / "toy"))
    reproduce(repo=repo)
    assert sorted(_ran(Path(repo))) == ["count", "double", "make"]
    # each stage process's flow run is a child of the reproduce run, through a tracking task
    assert {name: run[::2] for name, run in _stage_runs().items()} == {
        name: ("Completed", "Completed") for name in ("make", "double", "count")}
    reproduce(repo=repo)
    assert _ran(Path(repo)) == []  # nothing changed: nothing runs

    # a bad value fails the flow with the stage's own message, and nothing downstream runs
    with pytest.raises(dvc.StageFailed, match=r"ValueError: params.yaml `toy.n`"):
        reproduce(params={"toy": {"n": 0}}, repo=repo)
    assert _ran(Path(repo)) == ["make"]
    state, message, tracker = _stage_runs()["make"]  # failed under its parent, with the reason
    assert (state, tracker) == ("Failed", "Failed") and "params.yaml `toy.n`" in message

    # fixed: the experiment reruns `make` and its dependants only
    reproduce(params={"toy": {"n": 5}}, repo=repo)
    assert sorted(_ran(Path(repo))) == ["count", "double", "make"]
    assert (Path(repo) / "out/count.json").read_text() == "5"
    with pytest.raises(ValueError, match="toy.m"):
        reproduce(params={"toy": {"m": 5}}, repo=repo)

    # a crash in `double` after `make` completed: the rerun resumes after `make`
    (Path(repo) / "crash").touch()
    (Path(repo) / "params.yaml").write_text("toy:\n  n: 7\n")
    with pytest.raises(dvc.StageFailed, match="simulated crash"):
        reproduce(repo=repo)
    assert "make" in _ran(Path(repo))
    (Path(repo) / "crash").unlink()
    reproduce(repo=repo)
    ran = _ran(Path(repo))
    assert "double" in ran and "make" not in ran
    assert (Path(repo) / "out/double.json").read_text() == str(list(range(0, 14, 2)))


def test_a_ctrl_c_that_prefect_swallows_still_ends_the_stage_interrupted():
    """Prefect's engine drops a KeyboardInterrupt that lands after the flow's code finished;
    the stage must not then exit 0 as if nobody had pressed Ctrl-C."""
    from tasks.linking import _interruptible

    def swallowing_flow() -> str:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the signal is handled here, long before the sleep ends
        except KeyboardInterrupt:
            return "finished"  # what the engine does with it once the code has finished
        return "no signal arrived"

    # Python's handler, as at a terminal (a shell's background job starts with SIGINT ignored)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _interruptible(swallowing_flow)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
        assert _interruptible(lambda: "done") == "done"  # no Ctrl-C: the result, no raise
    finally:
        signal.signal(signal.SIGINT, before)
