"""One local Prefect server for a whole run: reuse one that answers, else start one on loopback.

    with ensure_server() as api_url: ...      # a run: reuse, or start and later stop its own
    python -m rlvr.server start [--port N]    # a shared server that outlives runs (`make serve`)
    python -m rlvr.server stop                # stop the server `start` recorded
    python -m rlvr.server status

A server this module starts is recorded in `$PREFECT_HOME/rlvr-server.json` (process id, its
start time so a recycled id is never signalled, port, owner); only that process group is ever
signalled. A run's own server dies with the run: it gets PR_SET_PDEATHSIG, so even a `kill -9`
of the run stops it, and the next start sweeps a record whose owner is gone. Standard library
only (no Prefect import): the check costs milliseconds, and the caller sets PREFECT_API_URL
before Prefect reads its settings.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"
DEFAULT_PORT = 4200
RECORD = "rlvr-server.json"


def home() -> Path:
    """$PREFECT_HOME (the server's database, log and record), created if missing."""
    path = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    path.mkdir(parents=True, exist_ok=True)
    return path


def healthy(api_url: str | None, timeout: float = 2.0) -> bool:
    """True when `{api_url}/health` answers 200."""
    if not api_url:
        return False
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _listens_elsewhere(port: int, group: int) -> bool:
    """True when the loopback listener on `port` is held by no process of group `group`.

    Why: two runs with different PREFECT_HOMEs can both find `port` free and start servers at
    once; one fails to bind, and its /health poll then reaches the other run's server, which
    stops when that run ends. Linux /proc only; elsewhere (unreadable) this says False."""
    try:
        inodes = {f"socket:[{f[9]}]" for table in ("/proc/net/tcp", "/proc/net/tcp6")
                  for f in (line.split() for line in Path(table).read_text().splitlines()[1:])
                  if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port}
        for proc in Path("/proc").glob("[0-9]*"):
            if (_stat(int(proc.name)) or ["", "", ""])[2] != str(group):
                continue
            for fd in proc.glob("fd/*"):
                try:
                    if os.readlink(fd) in inodes:
                        return False
                except OSError:
                    continue
    except OSError:
        return False
    return bool(inodes)


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _started(pid: int | None) -> str | None:
    """The process's start time in clock ticks (field 22): with the pid, its identity."""
    fields = _stat(pid) if pid else None
    return fields[19] if fields else None


def _alive(pid: int, started: str | None) -> bool:
    """The process `pid` that started at `started` is running (a zombie counts as gone)."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
    except ChildProcessError:
        pass
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z" and fields[19] == started


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A preexec_fn asking the kernel to send `sig` to the child when its parent thread exits.

    prctl is resolved here, before the fork, so the child runs no imports. PDEATHSIG fires when
    the forking *thread* ends: call from the main thread, never from a task's worker thread.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, sig)  # 1 = PR_SET_PDEATHSIG


def _stop_group(pid: int, started: str | None, grace: float = 15.0) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it after `grace` seconds."""
    if not _alive(pid, started):
        return
    os.killpg(pid, signal.SIGTERM)  # the server stops in ~0.2 s
    deadline = time.monotonic() + grace
    while _alive(pid, started):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            return
        time.sleep(0.1)


def _read_record() -> dict | None:
    try:
        return json.loads((home() / RECORD).read_text())
    except (OSError, ValueError):
        return None


def _live_record() -> dict | None:
    """The recorded server if it still runs; a record left by a dead owner is swept."""
    rec = _read_record()
    if rec is None:
        return None
    server_up = _alive(rec["pid"], rec["started"])
    if rec["owner"] and not _alive(rec["owner"], rec["owner_started"]):
        if server_up:  # no PDEATHSIG here (or it raced): stop the orphan now
            _stop_group(rec["pid"], rec["started"])
            print(f"stopped an orphaned Prefect server (pid {rec['pid']})", file=sys.stderr)
        server_up = False
    if not server_up:
        (home() / RECORD).unlink(missing_ok=True)
        return None
    return rec


def start(port: int, detach: bool, timeout: float = 300.0, record: bool = True) -> dict:
    """Start `prefect server start` on loopback:`port` and wait until it is healthy.

    detach=False: the server belongs to this process (stopped by `stop`, or by the kernel if
    this process dies); detach=True: it runs until `python -m rlvr.server stop`. record=False:
    not written to the record (another run's server is there).
    """
    api_url = f"http://{HOST}:{port}/api"
    # the UI asks settings, not --port, for its API address: without PREFECT_UI_API_URL the
    # browser calls 127.0.0.1:4200 and shows "Can't connect to Server API"
    env = dict(os.environ, PREFECT_SERVER_API_HOST=HOST, PREFECT_SERVER_API_PORT=str(port),
               PREFECT_API_URL=api_url, PREFECT_UI_API_URL=api_url,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    t0 = time.monotonic()
    with open(home() / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", HOST,
             "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # its own process group: `stop` signals exactly that group
            preexec_fn=None if detach else die_with_parent())
    owner = None if detach else os.getpid()
    rec = {"pid": proc.pid, "started": _started(proc.pid), "port": port, "api_url": api_url,
           "owner": owner, "owner_started": _started(owner)}
    if record:
        (home() / RECORD).write_text(json.dumps(rec))

    def abandon() -> None:
        _stop_group(proc.pid, rec["started"])
        if record:
            (home() / RECORD).unlink(missing_ok=True)

    try:
        while not healthy(api_url):
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError(f"the Prefect server did not become healthy on {api_url}; "
                                   f"see {home() / 'server.log'}")
            time.sleep(0.2)
        if _listens_elsewhere(port, proc.pid):  # it answered, but it is another run's server
            raise PortTaken(port)
    except BaseException:  # Ctrl-C while waiting included: no half-started server stays
        abandon()
        raise
    rec["startup_s"] = round(time.monotonic() - t0, 2)
    return rec


class PortTaken(RuntimeError):
    """Another process took the port between the check and the bind."""


def stop(rec: dict | None = None) -> dict | None:
    """Stop the recorded server (or `rec`) by its process id; returns what was stopped."""
    rec = rec or _read_record()
    if rec is None:
        return None
    _stop_group(rec["pid"], rec["started"])
    if (_read_record() or {}).get("pid") == rec["pid"]:
        (home() / RECORD).unlink(missing_ok=True)
    return rec


def _pick_port() -> int:
    port = int(os.environ.get("PREFECT_PORT", DEFAULT_PORT))
    return port if _port_free(port) else _free_port()


@contextmanager
def ensure_server() -> Iterator[str]:
    """Yield the API URL of a server for this run, with PREFECT_API_URL set for children.

    Reuses `PREFECT_API_URL` when it answers (an explicit address that does not answer is an
    error, never silently replaced), else a shared server `start` recorded; otherwise starts one
    on 127.0.0.1 (port $PREFECT_PORT or 4200, a free one if taken) and stops it on exit. That
    server dies with this process however it ends (PR_SET_PDEATHSIG on `kill -9`; stopped on
    Ctrl-C or an exception). When another live run owns the recorded server (which stops with
    that run), this run starts its own beside it, unrecorded.
    """
    url = os.environ.get("PREFECT_API_URL")
    if url:
        if not healthy(url):
            raise ValueError(f"PREFECT_API_URL={url} does not answer; start that server "
                               "(`make serve`) or unset PREFECT_API_URL to let this run start one")
        yield url
        return
    with open(home() / "rlvr-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs starting at once: one server, not two
        rec = _live_record()
        others = bool(rec and rec["owner"] and rec["owner"] != os.getpid())
        owned = rec is None or others
        if owned:
            try:
                rec = start(_pick_port(), detach=False, record=not others)
            except PortTaken:  # lost a race for the port to another run: take any free one
                rec = start(_free_port(), detach=False, record=not others)
            print(f"Prefect server for this run: {rec['api_url'].removesuffix('/api')} "
                  f"(started in {rec['startup_s']} s)", file=sys.stderr)
    os.environ["PREFECT_API_URL"] = rec["api_url"]
    try:
        yield rec["api_url"]
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        if owned:
            stop(rec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, help="start: port (default $PREFECT_PORT or 4200)")
    args = parser.parse_args(argv)
    rec = _live_record()
    if rec and rec["owner"] and args.command != "status":
        print(f"error: the Prefect server at {rec['api_url']} belongs to run pid {rec['owner']} "
              "and stops with it", file=sys.stderr)
        return 1
    if args.command == "start":
        if rec is None:
            port = args.port or int(os.environ.get("PREFECT_PORT", DEFAULT_PORT))
            if not _port_free(port):
                print(f"error: port {port} is in use; pass --port or set PREFECT_PORT",
                      file=sys.stderr)
                return 2
            rec = start(port, detach=True)
            print(f"started in {rec['startup_s']} s (pid {rec['pid']})", file=sys.stderr)
        print(rec["api_url"])
    elif args.command == "stop":
        if stop(rec):
            print(f"stopped the Prefect server (pid {rec['pid']})")
    else:
        state = "healthy" if rec and healthy(rec["api_url"]) else "not answering"
        print(f"{rec['api_url']}: {state} (pid {rec['pid']})" if rec else "no server recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
