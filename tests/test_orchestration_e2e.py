"""End to end, on copies of the working tree with tiny params (tests/data/tiny_params.yaml):
a real Prefect server + worker from scripts/serve.sh running a deployment; `dvc repro` building
everything, then nothing, then only what a params change touches; push/pull through a DVC
remote; offline plots; and sampling/scoring on real local Dask and Ray clusters giving the same
tables as the thread runner. All slow: several minutes on 2 cores."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)

from rlvr import server as server_mod
from rlvr.results import artifact_key
from tests.repo_copy import copy_repo, run, tool_env

pytestmark = pytest.mark.slow

def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """scripts/serve.sh in a copy of the repo: server on a free loopback port, pool, worker."""
    tmp = tmp_path_factory.mktemp("served")
    repo = copy_repo(tmp / "repo", tmp / "remote")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        env = tool_env(tmp, PREFECT_PORT=str(s.getsockname()[1]))
    run(["bash", "scripts/serve.sh"], repo, env, timeout=600)
    home = tmp / "prefect-home"
    server = json.loads((home / "rlvr-server.json").read_text())
    pids = {name: (pid, server_mod._started(pid)) for name, pid in
            [("server", server["pid"]), ("worker", int((home / "worker.pid").read_text()))]}
    env["PREFECT_API_URL"] = server["api_url"]
    try:
        yield repo, env
    finally:
        run(["bash", "scripts/stop.sh"], repo, env, timeout=120)
        for name, (pid, started) in pids.items():  # stop.sh stopped both by process id (a
            assert not server_mod._alive(pid, started), name  # zombie awaiting init is gone)


@pytest.fixture(scope="module")
def built(tmp_path_factory, served):
    """A second copy, `dvc repro` once from scratch (stage flows report to the served API)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    repo = copy_repo(tmp / "repo", tmp / "remote")
    env = tool_env(tmp, PREFECT_API_URL=served[1]["PREFECT_API_URL"])
    first = run(["dvc", "repro"], repo, env)
    return repo, env, first.stdout


def _every(read, **filters) -> list:
    """All pages of an API listing (each read returns at most `limit` rows)."""
    rows: list = []
    while page := read(**filters, limit=200, offset=len(rows)):
        rows += page
    return rows


def _tree(client: SyncPrefectClient, run_id: uuid.UUID) -> dict:
    """A reproduce run as the API has it: the run, its stage runs by name, its task runs by id,
    and the artifacts and log records of each stage run (by run name, the parent's as well)."""
    parent = client.read_flow_run(run_id)
    children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))
    runs = {run.name: run for run in children} | {"reproduce": parent}
    ids = [run.id for run in runs.values()]
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    artifacts = _every(client.read_artifacts, artifact_filter=ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    logs = _every(client.read_logs, log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
    name_of = {run.id: name for name, run in runs.items()}
    return {
        "parent": parent, "stages": {run.name: run for run in children},
        "tasks": {task.id: task for task in tasks},
        "artifacts": {name: {a.key: a for a in artifacts if a.flow_run_id == run.id}
                      for name, run in runs.items()},
        "logs": {name: [log for log in logs if name_of[log.flow_run_id] == name] for name in runs},
    }


@pytest.fixture(scope="module")
def deployed(served):
    """Deployment `reproduce/default` on the worker (the whole pipeline), then a run whose
    `prepare` stage fails its checks (a missing eval file): both run trees from the API."""
    repo, env = served
    good = run(["prefect", "deployment", "run", "reproduce/default", "--watch",
                "--watch-timeout", "1500"], repo, env)
    lock = (repo / "dvc.lock").read_text()
    bad = run(["prefect", "deployment", "run", "reproduce/default", "--watch", "--params",
               json.dumps({"params": {"task": {"eval_prompts": "missing.jsonl"}}})], repo, env,
              check=False)
    run(["git", "checkout", "--", "params.yaml"], repo, env)  # `dvc exp run -S` edited it
    assert bad.returncode != 0
    with SyncPrefectClient(env["PREFECT_API_URL"]) as client:
        trees = {kind: _tree(client, uuid.UUID(re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)))
                 for kind, out in (("good", good.stdout), ("bad", bad.stdout))}
    return trees | {"lock": lock}


def test_pipeline_is_one_run_tree(served, deployed):
    repo, env = served
    tree = deployed["good"]
    stages = run(["dvc", "stage", "list", "--name-only"], repo, env).stdout.split()
    assert tree["parent"].state_name == "Completed"
    assert sorted(tree["stages"]) == sorted(stages)  # every stage is a child of the run
    assert any(t.startswith("commit:") for t in tree["parent"].tags)
    for name, stage in tree["stages"].items():
        tracker = tree["tasks"][stage.parent_task_run_id]  # a task run of the reproduce run
        assert tracker.state_name == stage.state_name == "Completed", name
        assert f"stage:{name}" in stage.tags and any(t.startswith("commit:") for t in stage.tags)
    # DVC's own lines are in the parent; the stages were hosted in the reproduce process
    parent_logs = " ".join(log.message for log in tree["logs"]["reproduce"])
    assert "Running stage 'score'" in parent_logs and "in this process" in parent_logs


def test_a_bad_input_fails_the_parent_before_the_stage_run_exists(deployed):
    """The stage's checks run before its flow (issue 21: no server, no run for a bad input):
    the reproduce run fails with the library's line, and no stage run is left failed or
    running under it."""
    tree = deployed["bad"]
    reason = "no file at missing.jsonl"  # the library's own message
    assert tree["parent"].state_name == "Failed" and reason in tree["parent"].state.message
    assert not tree["stages"]  # prepare, DVC's first stage, failed its checks before its run


def test_stage_runs_publish_results_and_progress(deployed):
    tree = deployed["good"]
    for name in tree["stages"]:  # a table of headline numbers and a list of outputs each
        assert set(tree["artifacts"][name]) == {artifact_key(name, "metrics"),
                                                artifact_key(name, "outputs")}, name
    table = tree["artifacts"]["evaluate"]["evaluate-metrics"]
    assert table.type == "table" and "base.accuracy" in str(table.data)
    assert "data/tokens" in tree["artifacts"]["score"]["score-outputs"].data
    assert "reproduce-summary" in tree["artifacts"]["reproduce"]
    # the library's progress lines reached the stage runs (rlvr never imports Prefect)
    progress = {name: [log.message for log in logs if log.name == "rlvr.progress"]
                for name, logs in tree["logs"].items()}
    assert any(m.startswith("pretrain: 200/200 step (100%)") for m in progress["base"])
    for name, desc in [("rl", "grpo: "), ("sample", "sampling: "), ("score", "scoring: "),
                       ("cross_sample", "cross js: ")]:
        assert any(m.startswith(desc) for m in progress[name]), (name, progress[name])


def _page_text(chromium: str, url: str, shot: Path) -> str:
    """The text headless Chromium renders at `url` (scripts and tags stripped); a screenshot."""
    profile = shot.parent / f".profile-{shot.stem}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1400,1000",
             "--virtual-time-budget=15000"]  # let the UI fetch from the API and render
    env = dict(os.environ)
    run([chromium, *flags, f"--screenshot={shot}", url], shot.parent, env, timeout=180)
    dom = run([chromium, *flags, "--dump-dom", url], shot.parent, env, timeout=180).stdout
    shutil.rmtree(profile, ignore_errors=True)
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def test_ui_shows_run_tree_and_artifacts(served, deployed, tmp_path_factory, capsys):
    """The Prefect UI (V2 pages) in headless Chromium; screenshots kept as test artifacts."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's `chromium`)")
    shots = tmp_path_factory.mktemp("ui-screenshots")
    with capsys.disabled():
        print(f"\nPrefect UI screenshots: {shots}")
    ui = served[1]["PREFECT_API_URL"].removesuffix("/api") + "/v2"
    good, bad = deployed["good"], deployed["bad"]
    text = _page_text(chromium, f"{ui}/runs/flow-run/{good['parent'].id}?tab=SubflowRuns",
                      shots / "run-tree.png")
    assert f"{len(good['stages'])} Subflow runs" in text
    assert "weighted_run@baseline" in text and "cross_sample" in text and "Completed" in text
    text = _page_text(chromium, f"{ui}/runs/flow-run/{bad['parent'].id}",
                      shots / "failed-run.png")
    assert "Failed" in text
    text = _page_text(chromium, f"{ui}/runs/flow-run/{good['stages']['evaluate'].id}?tab=Artifacts",
                      shots / "stage-artifacts.png")
    assert "evaluate-metrics" in text and "evaluate-outputs" in text and "Parent Run" in text
    table = good["artifacts"]["evaluate"]["evaluate-metrics"]
    text = _page_text(chromium, f"{ui}/artifacts/artifact/{table.id}", shots / "metrics-table.png")
    assert "base.accuracy" in text
    assert all(p.stat().st_size > 10_000 for p in shots.glob("*.png"))  # rendered, not blank


def test_deployment_run_via_worker(served):
    repo, env = served
    listed = run(["prefect", "deployment", "ls"], repo, env).stdout
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for name in ["default", *stages]:
        assert f"reproduce/{name}" in listed
    done = run(["prefect", "deployment", "run", "reproduce/prepare", "--watch",
                "--watch-timeout", "900"], repo, env)
    assert "Completed" in done.stdout
    assert (repo / "data/task/train.parquet").exists()
    assert (repo / "data/task/eval.parquet").exists()
    status = run(["dvc", "status", "prepare"], repo, env).stdout
    assert "up to date" in status  # the outputs are recorded in dvc.lock and the cache

    # a bad value fails the run with the library's message, shown by the CLI
    bad = run(["prefect", "deployment", "run", "reproduce/prepare", "--watch",
                "--params", json.dumps({"params": {"task": {"n_train": 0}}})], repo, env,
               check=False)
    assert bad.returncode != 0 and "Failed" in bad.stdout
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", bad.stdout).group(1)
    logs = run(["prefect", "flow-run", "logs", run_id], repo, env).stdout
    assert "error: params.yaml `task.n_train`: must be positive" in logs  # the library's line
    run(["git", "checkout", "--", "params.yaml"], repo, env)  # `dvc exp run -S` edited it


def test_repro_builds_all_then_nothing(built):
    repo, env, first = built
    stages = run(["dvc", "stage", "list", "--name-only"], repo, env).stdout.split()
    assert sorted(_ran(first)) == sorted(stages)
    second = run(["dvc", "repro"], repo, env).stdout
    assert _ran(second) == []
    assert run(["dvc", "status", "dvc.yaml"], repo, env).stdout.strip().endswith("up to date.")
    dag = run(["dvc", "dag"], repo, env).stdout
    assert all(name.split("@")[0] in dag for name in stages)
    metrics = run(["dvc", "metrics", "show", "--json"], repo, env).stdout
    assert "data/metrics/" in metrics


def _cached_outs(lock: str, repo: Path) -> dict[str, str]:
    """md5 of every cached output in a dvc.lock text whose bytes depend on inputs alone."""
    timed = ("data/plots/", "data/weighted/", "data/report/")  # curves and runs log seconds
    return {out["path"]: out["md5"] for stage in yaml.safe_load(lock)["stages"].values()
            for out in stage.get("outs", []) if out["path"] not in _uncached(repo)
            and not out["path"].startswith(timed)}


def test_hosted_stages_write_what_stage_processes_write(deployed, built):
    """Stages hosted in the reproduce run (the deployment) and run as processes of their own
    (`dvc repro` from a shell) write byte-identical models, samples, tokens and analyses."""
    repo = built[0]
    hosted = _cached_outs(deployed["lock"], repo)
    assert {"data/models/base", "data/samples", "data/tokens", "data/cross"} <= set(hosted)
    assert hosted == _cached_outs((repo / "dvc.lock").read_text(), repo)


TIMED = ("train_seconds", "run_seconds")  # wall times a weighted run records: never equal


def _tables(root: Path) -> dict[str, pd.DataFrame]:
    """Every parquet part under `root`, the weighted runs without their wall times."""
    out = {}
    for p in sorted(root.rglob("*.parquet")):
        df = pd.read_parquet(p)
        out[str(p.relative_to(root))] = (df[~df.metric.isin(TIMED)].reset_index(drop=True)
                                         if "metric" in df.columns else df)
    return out


@pytest.mark.parametrize("kind", ["dask", "ray"])
def test_sharded_stages_on_a_local_cluster(built, kind):
    """Every sharded stage (sample, score, the cross-sampling cells, the decisive generators,
    the weighted runs) on a real local cluster writes the thread runner's tables: the part
    files byte-identical, the weighted runs equal but for their wall times.

    (Not `dvc repro` doing nothing: the stages' gate JSONs carry Great Expectations load times.)
    """
    repo, env, _ = built
    outs = {"sample": "data/samples", "score": "data/tokens", "cross_sample": "data/cross/cells",
            "decisive": "data/decisive/positions", "weighted": "data/weighted/runs"}
    before = {stage: _digests(repo / out) for stage, out in outs.items()}
    tables = {stage: _tables(repo / out) for stage, out in outs.items()}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    original = (repo / "params.yaml").read_text()
    params["runner"] = {"kind": kind, "address": "", "n_workers": 2}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        for stage, out in outs.items():
            shutil.rmtree(repo / out)
            args = ["--no-summary"] if stage == "weighted" else []
            run(["python", "-m", f"flows.{stage}", *args], repo, env)
            again = _tables(repo / out)
            assert again.keys() == tables[stage].keys(), stage
            for part, table in tables[stage].items():
                pd.testing.assert_frame_equal(again[part], table)
            if stage != "weighted":
                assert _digests(repo / out) == before[stage]  # byte-identical part files
    finally:
        (repo / "params.yaml").write_text(original)
    # record the rewritten outputs, as after any flow run outside `dvc repro`
    run(["dvc", "commit", "--force"], repo, env)


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
    run(["dvc", "push", "dvc.yaml"], repo, env)
    before = _digests(repo / "data")
    keep = tuple(str(Path(p).relative_to("data")) for p in _uncached(repo))
    shutil.rmtree(repo / ".dvc" / "cache")
    for rel in before:
        if not rel.startswith(keep) and rel != ".gitkeep":
            (repo / "data" / rel).unlink()
    run(["dvc", "pull", "dvc.yaml"], repo, env)
    assert _digests(repo / "data") == before  # every pushed output came back intact
    assert run(["dvc", "status", "dvc.yaml"], repo, env).stdout.strip().endswith("up to date.")

    page = run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], repo, env)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "<script src=" not in html  # nothing to fetch
    assert "vegaEmbed(" in html and "vega-lite" in html, page.stdout


def test_params_change_reruns_only_dependents(built):
    repo, env, _ = built
    # a knob params.yaml leaves at the family's default: `+` adds it (`dvc exp run -S +k=v`)
    name, key, value = "analyze", "analyze.n_position_bins", 10
    # expected: the stage and everything downstream of it in DVC's graph
    dot = run(["dvc", "dag", "--dot"], repo, env).stdout
    edges = re.findall(r'"([^"]+)" -> "([^"]+)"', dot)
    expected, frontier = {name}, [name]
    while frontier:
        node = frontier.pop()
        for a, b in edges:
            if a == node and b not in expected:
                expected.add(b)
                frontier.append(b)
    out = run(["dvc", "exp", "run", "-S", f"+{key}={json.dumps(value + 1)}"], repo, env).stdout
    assert set(_ran(out)) <= expected and name in _ran(out), out
    shown = run(["dvc", "exp", "show", "--json"], repo, env).stdout
    assert key.split(".")[-1] in shown
    # one weighting variant's knob reruns that variant's runs only (then the summary, report)
    variants = yaml.safe_load((repo / "params.yaml").read_text())["weighted_variants"]
    variant = next(v for v in variants if v != "baseline")
    out = run(["dvc", "exp", "run", "-S", f"weighted_variants.{variant}.alpha=0.25"], repo,
              env).stdout
    reran = [s for s in _ran(out) if s.startswith("weighted_run@")]
    assert reran == [f"weighted_run@{variant}"], out


def viewer_responses(page: str) -> list[tuple[str, str]]:
    """(pair · generator · prompt, the token texts) of each response the token viewer shows."""
    viewer = page.split('<section id="viewer">')[1]
    blocks = re.findall(r'<div class="resp-head">(.*?) #\d+ .*?<div class="toks">(.*?)</div>',
                        viewer, flags=re.S)
    return [(head, " ".join(re.findall(r">([^<]*)</span>", toks))) for head, toks in blocks]


def test_report_reads_clean(built):
    """The report of a whole tiny run as a reader sees it: every figure drawn (no failure notice
    in its place, none empty) and the token viewer showing each distinct response once."""
    repo, _, _ = built
    page = (repo / "data" / "report" / "index.html").read_text()
    failed = re.findall(r'<div class="notice failed">(.*?)</div>', page)
    assert failed == []
    assert page.count("<img ") >= 12
    shown = viewer_responses(page)
    assert shown and len(shown) == len(set(shown)), shown
