"""End to end, on copies of the working tree with tiny params (tests/data/tiny_params.yaml):
a real Prefect server + worker from scripts/serve.sh running a deployment; `dvc repro` building
everything, then nothing, then only what a params change touches; push/pull through a DVC
remote; offline plots; and sampling/scoring on real local Dask and Ray clusters giving the same
tables as the thread runner. All slow: several minutes on 2 cores."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SKIP = {".git", ".venv", ".venv-vllm", ".prefect", ".dvc-site-cache", ".pytest_cache",
        ".ruff_cache", "__pycache__", "dvc.lock", "rlvr_lens.egg-info"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
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


def _run(args: list[str], cwd: Path, env: dict[str, str], check: bool = True,
         timeout: int = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def _merge(params: dict, tiny: dict) -> None:
    """Deep-merge `tiny` into `params` (keys params.yaml no longer has are ignored)."""
    for key, value in tiny.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            _merge(params[key], value)
        elif key in params:
            params[key] = value


def _copy_repo(dst: Path, remote: Path) -> Path:
    """The working tree as a fresh repository (everything committed), with tiny params."""
    shutil.copytree(ROOT, dst, ignore=lambda d, names: [
        n for n in names if n in SKIP or (Path(d) == ROOT / "data" and n != ".gitkeep")
        or (Path(d) == ROOT / ".dvc" and n in ("cache", "tmp", "config.local"))])
    (dst / ".venv").symlink_to(ROOT / ".venv")
    params = yaml.safe_load((dst / "params.yaml").read_text())
    tiny = yaml.safe_load((ROOT / "tests/data/tiny_params.yaml").read_text())
    _merge(params, tiny)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    env = _env(dst.parent)
    # deployments for the stages as they are now (test_orchestration checks the committed file)
    _run(["python", "scripts/write_prefect_yaml.py"], dst, env)
    _run(["git", "init", "-q"], dst, env)
    _run(git + ["add", "-A"], dst, env)
    _run(git + ["commit", "-qm", "copy"], dst, env)
    _run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], dst, env)
    return dst


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """scripts/serve.sh in a copy of the repo: server on a free loopback port, pool, worker."""
    tmp = tmp_path_factory.mktemp("served")
    repo = _copy_repo(tmp / "repo", tmp / "remote")
    env = _env(tmp, PREFECT_PORT=str(_free_port()))
    _run(["bash", "scripts/serve.sh"], repo, env, timeout=600)
    pids = {n: int((tmp / "prefect-home" / f"{n}.pid").read_text()) for n in ("server", "worker")}
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{env['PREFECT_PORT']}/api"
    try:
        yield repo, env
    finally:
        _run(["bash", "scripts/stop.sh"], repo, env, timeout=120)
        for pid in pids.values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # gone: stop.sh stopped it by its process id


@pytest.fixture(scope="module")
def built(tmp_path_factory, served):
    """A second copy, `dvc repro` once from scratch (stage flows report to the served API)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    repo = _copy_repo(tmp / "repo", tmp / "remote")
    env = _env(tmp, PREFECT_API_URL=served[1]["PREFECT_API_URL"])
    first = _run(["dvc", "repro"], repo, env)
    return repo, env, first.stdout


def test_deployment_run_via_worker(served):
    repo, env = served
    listed = _run(["prefect", "deployment", "ls"], repo, env).stdout
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for name in ["default", *stages]:
        assert f"reproduce/{name}" in listed
    run = _run(["prefect", "deployment", "run", "reproduce/prepare", "--watch",
                "--watch-timeout", "900"], repo, env)
    assert "Completed" in run.stdout
    assert (repo / "data/task/train.parquet").exists()
    assert (repo / "data/task/eval.parquet").exists()
    status = _run(["dvc", "status", "prepare"], repo, env).stdout
    assert "up to date" in status  # the outputs are recorded in dvc.lock and the cache

    # a bad value fails the run with the library's message, shown by the CLI
    bad = _run(["prefect", "deployment", "run", "reproduce/prepare", "--watch",
                "--params", json.dumps({"params": {"task": {"n_train": 0}}})], repo, env,
               check=False)
    assert bad.returncode != 0 and "Failed" in bad.stdout
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", bad.stdout).group(1)
    logs = _run(["prefect", "flow-run", "logs", run_id], repo, env).stdout
    assert "error: params.yaml `task.n_train`: must be positive" in logs  # the library's line
    _run(["git", "checkout", "--", "params.yaml"], repo, env)  # `dvc exp run -S` edited it


def test_repro_builds_all_then_nothing(built):
    repo, env, first = built
    stages = _run(["dvc", "stage", "list", "--name-only"], repo, env).stdout.split()
    assert sorted(_ran(first)) == sorted(stages)
    second = _run(["dvc", "repro"], repo, env).stdout
    assert _ran(second) == []
    assert _run(["dvc", "status"], repo, env).stdout.strip().endswith("up to date.")
    dag = _run(["dvc", "dag"], repo, env).stdout
    assert all(name.split("@")[0] in dag for name in stages)
    metrics = _run(["dvc", "metrics", "show", "--json"], repo, env).stdout
    assert "data/metrics/" in metrics


@pytest.mark.parametrize("kind", ["dask", "ray"])
def test_sharded_stages_on_a_local_cluster(built, kind):
    """sample and score on a real local cluster write exactly the thread runner's part files.

    (Not `dvc repro` doing nothing: the stages' gate JSONs carry Great Expectations load times.)
    """
    repo, env, _ = built
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    if not {"sample", "score"} <= set(stages):
        pytest.skip("sample/score stages not in dvc.yaml")
    outs = {"sample": "data/samples", "score": "data/tokens"}
    before = {stage: _digests(repo / out) for stage, out in outs.items()}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    original = (repo / "params.yaml").read_text()
    params["runner"] = {"kind": kind, "address": "", "n_workers": 2}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        for stage, out in outs.items():
            thread_tables = {p: pd.read_parquet(repo / out / p) for p in before[stage]
                             if p.endswith(".parquet")}
            shutil.rmtree(repo / out)
            _run(["python", "-m", f"flows.{stage}"], repo, env)
            for part, table in thread_tables.items():
                pd.testing.assert_frame_equal(pd.read_parquet(repo / out / part), table)
            assert _digests(repo / out) == before[stage]  # byte-identical part files
    finally:
        (repo / "params.yaml").write_text(original)
    # record the rewritten gate JSONs, as after any flow run outside `dvc repro`
    _run(["dvc", "commit", "--force", "sample", "score"], repo, env)


def _uncached(repo: Path) -> list[str]:
    """Output paths declared `cache: false` in dvc.yaml (metrics, gates): never pushed."""
    paths = []
    for stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].values():
        stage = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                if isinstance(entry, dict):
                    paths += [p for p, opts in entry.items() if (opts or {}).get("cache") is False]
    return paths


def test_push_pull_and_offline_plots(built, tmp_path):
    repo, env, _ = built
    _run(["dvc", "push"], repo, env)
    before = _digests(repo / "data")
    keep = tuple(str(Path(p).relative_to("data")) for p in _uncached(repo))
    shutil.rmtree(repo / ".dvc" / "cache")
    for rel in before:
        if not rel.startswith(keep) and rel != ".gitkeep":
            (repo / "data" / rel).unlink()
    _run(["dvc", "pull"], repo, env)
    assert _digests(repo / "data") == before  # every pushed output came back intact
    assert _run(["dvc", "status"], repo, env).stdout.strip().endswith("up to date.")

    page = _run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], repo, env)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "<script src=" not in html  # nothing to fetch
    assert "vegaEmbed(" in html and "vega-lite" in html, page.stdout


def test_params_change_reruns_only_dependents(built):
    repo, env, _ = built
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    name = "evaluate" if "evaluate" in stages else next(iter(stages))
    key = next(p for p in stages[name]["params"] if isinstance(p, str))
    key = key if "." in key else f"{key}.seed"
    section, leaf = key.split(".", 1)
    value = yaml.safe_load((repo / "params.yaml").read_text())[section][leaf]
    # expected: the stage and everything downstream of it in DVC's graph
    dot = _run(["dvc", "dag", "--dot"], repo, env).stdout
    edges = re.findall(r'"([^"]+)" -> "([^"]+)"', dot)
    expected, frontier = {name}, [name]
    while frontier:
        node = frontier.pop()
        for a, b in edges:
            if a == node and b not in expected:
                expected.add(b)
                frontier.append(b)
    out = _run(["dvc", "exp", "run", "-S", f"{key}={json.dumps(value + 1)}"], repo, env).stdout
    assert set(_ran(out)) <= expected and name in _ran(out), out
    shown = _run(["dvc", "exp", "show", "--json"], repo, env).stdout
    assert key.split(".")[-1] in shown


def viewer_responses(page: str) -> list[tuple[str, str]]:
    """(pair · generator · prompt, the token texts) of each response the token viewer shows."""
    viewer = page.split('<section id="viewer">')[1]
    blocks = re.findall(r'<div class="resp-head">(.*?) #\d+ .*?<div class="toks">(.*?)</div>',
                        viewer, flags=re.S)
    return [(head, " ".join(re.findall(r">([^<]*)</span>", toks))) for head, toks in blocks]


def test_report_reads_clean(built):
    """The report of a whole tiny run as a reader sees it: every figure drawn (no failure notice
    in its place, none empty) and the token viewer showing each distinct response once."""
    from rlvr.report.blocks import failures

    repo, _, _ = built
    page = (repo / "data" / "report" / "index.html").read_text()
    assert failures(page) == []
    assert page.count("<img ") >= 12
    shown = viewer_responses(page)
    assert shown and len(shown) == len(set(shown)), shown
