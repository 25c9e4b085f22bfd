"""A stage started on its own (`python -m flows.<stage>`, no server to report to) gets a Prefect
server that dies with it, however it ends: `kill -9`, Ctrl-C or a crash (issue 21: a killed
`python -m flows.score` left Prefect's temporary server running, re-parented to init). And what
a stage prints when a check fails inside its flow: the one `error:` line, no traceback, while
the run's state in Prefect still records the failure; an unexpected exception keeps its
traceback. Slow: each case starts a real Prefect server (~10-30 s)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from rlvr import server
from tests.test_bad_inputs import built  # noqa: F401 (the fixture: data/ every stage wrote)
from tests.test_server import _command, _descendants, _free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def stage_dir(built, tmp_path):  # noqa: F811 (the imported fixture)
    """A working directory with the built data/ and params.yaml scoring (base, rl)."""
    shutil.copytree(built.root, tmp_path / "data")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["score"].update(tuned=["rl"], checkpoints=False, js_top_p=0.65)  # every part redone
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_PORT": str(_free_port())}


def _start_and_wait_for_server(args: list[str], cwd: Path) -> tuple[subprocess.Popen, dict]:
    """Start a stage; return it and the processes below it once its server answers."""
    # SIGINT as at a terminal: in CI something before this test leaves it ignored in pytest's
    # process (seen in the fast suite), and an inherited SIG_IGN would swallow the Ctrl-C
    proc = subprocess.Popen(args, cwd=cwd, env=_env(cwd), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stderr:  # the stage says so once its server is healthy
        if line.startswith("Prefect server for this run:"):
            break
    else:
        pytest.fail(f"no server started (exit {proc.wait()})")
    below = _descendants(proc.pid)
    assert any("server" in _command(p) and "start" in _command(p) for p in below), below
    return proc, below


def _all_gone(below: dict) -> list[list[str]]:
    deadline = time.monotonic() + 60
    while any(server._alive(p, s) for p, s in below.items()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return [_command(p) for p, s in below.items() if server._alive(p, s)]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_stage_on_its_own_takes_its_server_with_it(stage_dir, how):
    proc, below = _start_and_wait_for_server([sys.executable, "-m", "flows.score"], stage_dir)
    proc.send_signal(how)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert _all_gone(below) == []
    record = stage_dir / "prefect" / server.RECORD
    assert not record.exists() or server._live_record() is None


def test_a_crashing_stage_takes_its_server_with_it_and_keeps_its_traceback(stage_dir):
    """An unexpected exception inside the flow (a token part that is not parquet, in a table
    marked complete): exit 1 with the traceback, and no process left behind."""
    part = next((stage_dir / "data/tokens").rglob("part-*.parquet"))
    part.write_bytes(b"not parquet")
    proc, below = _start_and_wait_for_server([sys.executable, "-m", "flows.analyze"],
                                             stage_dir)
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 1
    assert "Traceback" in err and "ArrowInvalid" in err and "\nerror: " not in err
    assert _all_gone(below) == []


PROBE = '''
import sys
from prefect import flow, task
from rlvr.config import run_main
from rlvr.models.loading import check_model_dir
from tasks.linking import run_stage

@task
def plan(kind: str) -> None:
    if kind == "check":  # one of the library's checks, failing inside the flow
        check_model_dir("/nowhere/model", made_by="pretrain")
    raise RuntimeError("a bug, not a bad input")

@flow(name="probe")
def probe(kind: str) -> None:
    plan(kind)

run_main(lambda: run_stage(probe, sys.argv[1]))
'''


def _flow_runs(api_url: str) -> list[dict]:
    request = urllib.request.Request(f"{api_url}/flow_runs/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_check_failing_inside_a_flow_prints_one_line_and_prefect_records_it(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    env = _env(tmp_path)
    api_url = subprocess.run([sys.executable, "-m", "rlvr.server", "start"], env=env, text=True,
                             capture_output=True, check=True, timeout=400).stdout.strip()
    try:
        check = subprocess.run([sys.executable, "probe.py", "check"], cwd=tmp_path, env=env,
                               text=True, capture_output=True, timeout=300)
        bug = subprocess.run([sys.executable, "probe.py", "bug"], cwd=tmp_path, env=env,
                             text=True, capture_output=True, timeout=300)
        runs = {r["parameters"]["kind"]: r for r in _flow_runs(api_url)}
    finally:
        subprocess.run([sys.executable, "-m", "rlvr.server", "stop"], env=env, timeout=120)
    line = ("error: no model at /nowhere/model (config.json missing): run the `pretrain` stage "
            "first (dvc repro pretrain)")
    assert check.returncode == 2 and check.stderr.splitlines()[-1] == line
    assert "Traceback" not in check.stderr and check.stderr.count("no model at") == 1
    assert runs["check"]["state_type"] == "FAILED"
    assert "no model at /nowhere/model" in runs["check"]["state"]["message"]
    assert bug.returncode == 1 and "Traceback" in bug.stderr
    assert "RuntimeError: a bug, not a bad input" in bug.stderr
    assert runs["bug"]["state_type"] == "FAILED"
