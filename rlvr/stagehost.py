"""Stage host: DVC runs the stage commands, one long-lived process runs the stage bodies.

A stage command is `python -m flows <stage> [args]` (see flows/__main__.py). When the process
that started `dvc` hosts stages (it set RLVR_STAGE_SOCKET), the command forwards itself over a
unix socket, the host runs `python -m flows.<stage> [args]` in its own main thread with
`runpy`, and the command exits with the stage's exit code. So Python, torch, transformers,
Great Expectations and Prefect start once per pipeline instead of once per stage (~6-10 s per
stage on 2 cores), while DVC still decides what runs, removes, hashes and caches the outputs,
and writes dvc.lock. Anywhere else (a plain `dvc repro` in a shell, an experiment in a temporary
copy) the command simply runs `python -m flows.<stage>` itself.

Stages share the host's memory: each one starts from what a fresh process would see for what
matters here (working directory, argv, DVC_* variables, torch's thread count and global seed),
and the host gets them back afterwards. What a stage freed goes back to the system when it ends
(a garbage collection, then glibc's `malloc_trim`: freed heap pages stay in the process
otherwise, and the next stage's peak lands on top of them), and the host prints the stage's wall
time and peak RSS (`stage <name>: <s> s, peak RSS <GB> GB, <GB> GB after`; the peak is reset at
each stage start, so it is the stage's own).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import runpy
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENV_SOCKET = "RLVR_STAGE_SOCKET"
ENV_ROOT = "RLVR_STAGE_ROOT"  # the host's checkout: a stage elsewhere runs in its own process

Request = dict[str, Any]  # {"argv": [module, *args], "cwd": str, "env": {DVC_*: value}}
Reply = dict[str, Any]  # {"rc": int, "error": str | None}


def forward(argv: list[str]) -> int | None:
    """Run `python -m <argv>` in the host serving this checkout: its exit code; None if none."""
    path = os.environ.get(ENV_SOCKET)
    if not path or os.path.realpath(os.getcwd()) != os.environ.get(ENV_ROOT):
        return None
    request = {"argv": argv, "cwd": os.getcwd(),
               "env": {k: v for k, v in os.environ.items() if k.startswith("DVC_")}}
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(path)
            conn.sendall(json.dumps(request).encode() + b"\n")
            line = conn.makefile().readline()  # blocks until the stage is done
    except OSError as err:
        line, reason = "", err
    else:
        reason = "it closed the connection"
    if not line:
        print(f"error: the process hosting pipeline stages went away ({reason})",
              file=sys.stderr)
        return 1
    reply = json.loads(line)
    if reply["error"]:  # DVC's output, and so the reproduce run's failure reason, shows it
        print(reply["error"], file=sys.stderr)
    return reply["rc"]


@contextmanager
def listening(root: str | Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    """A unix socket for stage requests, and the env vars that point stage commands at it."""
    tmp = tempfile.mkdtemp(prefix="rlvr-stages-")
    path = os.path.join(tmp, "host.sock")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(path)
        server.listen()
        server.settimeout(0.2)  # poll: the accept loop also watches the dvc process
        yield server, {ENV_SOCKET: path, ENV_ROOT: os.path.realpath(root)}
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


def serve(server: socket.socket, proc: subprocess.Popen,
          handle: Callable[[Request], Reply]) -> None:
    """Answer stage requests in this thread, one at a time, until `proc` exits."""
    while proc.poll() is None:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        with conn:
            request = json.loads(conn.makefile().readline())
            conn.sendall(json.dumps(handle(request)).encode() + b"\n")


def run_module(request: Request) -> Reply:
    """Run `python -m <argv>` in this process as the stage command would have in its own."""
    module, *args = request["argv"]
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    saved_env = {k: os.environ.get(k) for k in request["env"]}
    _fresh_torch()
    os.environ.update(request["env"])
    sys.argv = [module, *args]
    os.chdir(request["cwd"])
    stage, start = request["env"].get("DVC_STAGE", module), _reset_peak()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
        return {"rc": 0, "error": None}
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        # `rlvr.config.one_line_errors` exits 2 while handling the error: that is the reason
        reason = exc.__context__
        return {"rc": rc, "error": f"error: {reason}" if rc and reason else None}
    except Exception as exc:  # what a stage process would print before exiting 1
        traceback.print_exc()
        return {"rc": 1, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        _fresh_torch()
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        peak = memory()["peak_gb"]
        release_memory()
        print(f"stage {stage}: {time.perf_counter() - start:.1f} s, peak RSS {peak:.2f} GB, "
              f"{memory()['rss_gb']:.2f} GB after", file=sys.stderr, flush=True)


def memory() -> dict[str, float]:
    """This process's resident set now and its peak since the last reset, in GB (Linux)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return {"rss_gb": float("nan"), "peak_gb": float("nan")}
    kb = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
          if line.startswith(("VmRSS:", "VmHWM:"))}
    return {"rss_gb": kb["VmRSS"] / 1e6, "peak_gb": kb["VmHWM"] / 1e6}


def _reset_peak() -> float:
    """Reset the peak RSS to the current RSS (Linux `clear_refs` 5); returns the start time."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: the peak is then the process's
        pass
    return time.perf_counter()


def release_memory() -> None:
    """Free what nothing references, and hand glibc's free heap pages back to the system."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


_TORCH_DEFAULTS: dict[str, int] = {}


def _fresh_torch() -> None:
    """torch's thread count and global seed as in a fresh process (stages set both)."""
    import torch  # every stage but the lightest imports it anyway

    if not _TORCH_DEFAULTS:
        _TORCH_DEFAULTS.update(threads=torch.get_num_threads(), seed=torch.initial_seed())
    torch.set_num_threads(_TORCH_DEFAULTS["threads"])
    torch.manual_seed(_TORCH_DEFAULTS["seed"])
