"""rlvr.server: reuse policy, ownership records, orphan sweep; a real server start, stop and
`kill -9` of its owner (slow)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlvr import server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return tmp_path


def _sleeper() -> subprocess.Popen:
    """A live process in its own group: stands in for a server or an owner in the record."""
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def _record(home: Path, pid: int, owner: int | None) -> None:
    (home / server.RECORD).write_text(json.dumps({
        "pid": pid, "started": server._started(pid), "port": 1, "api_url": "http://127.0.0.1:1/api",
        "owner": owner, "owner_started": server._started(owner)}))


def test_an_explicit_url_that_does_not_answer_is_an_error(home, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{port}/api")
    with pytest.raises(ValueError, match="does not answer"), server.ensure_server():
        pass


def test_a_server_owned_by_another_live_run_is_not_borrowed(home, monkeypatch):
    """It stops with its run: this run starts its own beside it, unrecorded, and stops that."""
    fake_server, owner, mine = _sleeper(), _sleeper(), _sleeper()
    calls = []

    def start(port: int, detach: bool, record: bool = True) -> dict:  # `prefect server start`
        calls.append((detach, record))
        return {"pid": mine.pid, "started": server._started(mine.pid), "port": port,
                "api_url": "http://127.0.0.1:2/api", "owner": os.getpid(),
                "owner_started": server._started(os.getpid()), "startup_s": 0.0}

    monkeypatch.setattr(server, "start", start)
    try:
        _record(home, fake_server.pid, owner.pid)
        record = (home / server.RECORD).read_text()
        with server.ensure_server() as url:
            assert url == "http://127.0.0.1:2/api" and calls == [(False, False)]
            assert os.environ["PREFECT_API_URL"] == url
        assert (home / server.RECORD).read_text() == record  # the other run's, untouched
        assert fake_server.poll() is None  # someone else's: never signalled
        assert mine.wait(timeout=30) is not None  # ours: stopped on the way out
    finally:
        for proc in (fake_server, owner, mine):
            proc.kill()
            proc.wait()


def test_the_server_of_a_dead_owner_is_swept(home):
    fake_server, owner = _sleeper(), _sleeper()
    _record(home, fake_server.pid, owner.pid)
    owner.kill()
    owner.wait()
    started = server._started(fake_server.pid)
    assert server._live_record() is None  # the owner is gone: its server is stopped, record too
    assert not server._alive(fake_server.pid, started) and server._stat(fake_server.pid) is None
    assert not (home / server.RECORD).exists()


def test_a_recycled_pid_is_not_the_recorded_process(home):
    proc = _sleeper()
    try:
        _record(home, proc.pid, None)
        record = json.loads((home / server.RECORD).read_text())
        assert server._alive(proc.pid, record["started"])
        assert not server._alive(proc.pid, str(int(record["started"]) - 1))  # another start time
    finally:
        proc.kill()
        proc.wait()


RUN_OWNER = """
import sys, time
from rlvr.server import ensure_server
with ensure_server() as url:
    print(url, flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_server_that_answers_on_the_port_but_is_not_ours_is_refused(home):
    # the race of two runs starting at once: the port was free when picked, then another run's
    # server took it; its /health answers, but the listener is not in our process group
    import http.server
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    other = http.server.HTTPServer((server.HOST, 0), Health)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    try:
        assert server.healthy(f"http://{server.HOST}:{port}/api")
        assert server._listens_elsewhere(port, os.getpgrp() + 10**7)  # no such group holds it
        assert not server._listens_elsewhere(port, os.getpgrp())  # this test's group holds it
        with pytest.raises(server.PortTaken):
            server.start(port, detach=False)
        assert not (home / server.RECORD).exists()  # our half-started server is gone
    finally:
        other.shutdown()


def test_real_server_start_stop_and_kill_9_of_its_owner(home):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PREFECT_PORT=str(_free_port()))
    cli = [sys.executable, "-m", "rlvr.server"]
    # detached, as `make serve` starts it: healthy, recorded, stopped by its process id
    url = subprocess.run([*cli, "start"], env=env, check=True,
                         capture_output=True, text=True, timeout=400).stdout.strip()
    rec = json.loads((home / server.RECORD).read_text())
    assert server.healthy(url) and rec["owner"] is None
    subprocess.run([*cli, "stop"], env=env, check=True, timeout=60)
    assert not server._alive(rec["pid"], rec["started"]) and not server.healthy(url)

    # owned by a run: `kill -9` of the run still stops it (PR_SET_PDEATHSIG)
    owner = subprocess.Popen([sys.executable, "-c", RUN_OWNER], env=env, stdout=subprocess.PIPE,
                             text=True, cwd=ROOT)
    url = owner.stdout.readline().strip()  # (the server is started on $PREFECT_PORT)
    rec = json.loads((home / server.RECORD).read_text())
    assert server.healthy(url) and rec["owner"] == owner.pid
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 30
    while server._alive(rec["pid"], rec["started"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server._alive(rec["pid"], rec["started"]), "the server outlived its owner"
    assert server._live_record() is None  # and the next run sweeps the stale record


def _command(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


def _descendants(root: int) -> dict[int, str | None]:
    """Every live process below `root`, with its start time."""
    parent = {}
    for entry in Path("/proc").iterdir():
        fields = server._stat(int(entry.name)) if entry.name.isdigit() else None
        if fields:
            parent[int(entry.name)] = int(fields[1])
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in found:
                found[child] = server._started(child)
                todo.append(child)
    return found


@pytest.mark.slow
def test_kill_9_of_a_pipeline_run_leaves_no_process(home, tmp_path):
    """`make reproduce` killed while a stage runs: its server, the run, dvc and the stage go too."""
    from tests.repo_copy import copy_repo, tool_env

    repo = copy_repo(tmp_path / "repo", tmp_path / "remote")
    env = tool_env(tmp_path, PREFECT_PORT=str(_free_port()))
    run = subprocess.Popen([sys.executable, "-m", "flows.reproduce", "prepare"], cwd=repo,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # until dvc runs the stage command
        below = _descendants(run.pid)
        if any(_command(p)[1:3] == ["-m", "flows"] for p in below):
            break
        time.sleep(0.5)
    assert len(below) >= 4, below  # server, the run's child, dvc, the stage command
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 60
    while any(server._alive(p, s) for p, s in below.items()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [_command(p) for p, s in below.items() if server._alive(p, s)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
