"""The working tree as a fresh git + DVC repository with tiny params, for the end-to-end tests
and benchmarks/bench_overhead.py (tests/data/tiny_params.yaml; every tool runs offline)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from rlvr.study import merge

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SKIP = {".git", ".venv", ".venv-vllm", ".prefect", ".dvc-site-cache", ".pytest_cache",
        ".ruff_cache", "__pycache__", "dvc.lock", "rlvr_lens.egg-info"}


def tool_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This environment's tools first on PATH, Prefect and DVC state under `tmp`, no telemetry."""
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env['PATH']}", "PREFECT_HOME": str(tmp / "prefect-home"),
        "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site"), "HF_HUB_OFFLINE": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180", "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",  # Prefect's tables: no truncated deployment names
    })
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str], check: bool = True,
        timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with the tails of its output."""
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def copy_repo(dst: Path, remote: Path, tiny: bool = True) -> Path:
    """The working tree as a fresh repository (everything committed), tiny params by default."""
    shutil.copytree(ROOT, dst, ignore=lambda d, names: [
        n for n in names if n in SKIP or (Path(d) == ROOT / "data" and n != ".gitkeep")
        or (Path(d) == ROOT / ".dvc" and n in ("cache", "tmp", "config.local"))])
    (dst / ".venv").symlink_to(ROOT / ".venv")
    if tiny:
        params = yaml.safe_load((dst / "params.yaml").read_text())
        params = merge(params, yaml.safe_load((ROOT / "tests/data/tiny_params.yaml").read_text()))
        (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    env = tool_env(dst.parent)
    # dvc.yaml and deployments for the params as they are now (a test checks the committed ones)
    run(["python", "-m", "rlvr.cli", "pipeline"], dst, env | {"PYTHONPATH": str(dst)})
    run(["git", "init", "-q"], dst, env)
    run(git + ["add", "-A"], dst, env)
    run(git + ["commit", "-qm", "copy"], dst, env)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], dst, env)
    return dst
