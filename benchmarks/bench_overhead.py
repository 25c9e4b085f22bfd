"""Benchmark: orchestration overhead of a whole pipeline run, stage work against wall time.

Starts a Prefect server the way `make reproduce` does (its start-up counts), runs
`python -m flows.reproduce --force` (every stage reruns), then reads the run tree from the API.
Stage work is the sum of the stage runs' durations (Running to final state, as the UI shows
them); overhead is everything else: server start, Python and library imports, Prefect run
set-up, DVC's dependency checks, hashing and caching, `dvc status`. Target: overhead <= 10%.

    python benchmarks/bench_overhead.py               # tiny params, in a temporary copy (~4 min)
    python benchmarks/bench_overhead.py --default     # params.yaml as is, this checkout (~15 min)
    ... --one-process-per-stage                       # each stage in its own process (the old way)

Prints one line per stage, then total, stage work, overhead and the load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlvr.server import ensure_server  # noqa: E402
from tests.repo_copy import copy_repo, tool_env  # noqa: E402


def stage_runs(api_url: str) -> tuple[dict, list[dict]]:
    """The latest `reproduce` run and its stage (child) runs, oldest first."""
    os.environ["PREFECT_API_URL"] = api_url  # before Prefect reads its settings
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (parent,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["reproduce"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])),
            sort=FlowRunSort.START_TIME_ASC)

    def row(run) -> dict:
        return {"name": run.name, "state": run.state_name,
                "seconds": (run.end_time - run.start_time).total_seconds()}

    return row(parent), [row(c) for c in children]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--default", action="store_true",
                        help="the default params.yaml in this checkout (else tiny, in a copy)")
    parser.add_argument("--one-process-per-stage", action="store_true")
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    repo = ROOT if args.default else copy_repo(work_dir / "repo", work_dir / "remote")
    env = tool_env(work_dir)
    if args.default:  # the checkout's own Prefect and DVC state, as `make reproduce` uses
        env |= {"PREFECT_HOME": str(ROOT / ".prefect"),
                "DVC_SITE_CACHE_DIR": str(ROOT / ".dvc-site-cache")}
    os.environ.update(env)
    command = [sys.executable, "-m", "flows.reproduce", "--force"]
    if args.one_process_per_stage:
        command.append("--one-process-per-stage")
    load_before = os.getloadavg()
    t0 = time.monotonic()
    with ensure_server() as api_url:
        server_s = time.monotonic() - t0
        proc = subprocess.run(command, cwd=repo, env=os.environ | {"PYTHONPATH": str(repo)})
        total = time.monotonic() - t0
        parent, stages = stage_runs(api_url)
    load_after = os.getloadavg()
    if proc.returncode != 0:
        print(f"reproduce failed (exit {proc.returncode})", file=sys.stderr)
        return 1
    work = sum(s["seconds"] for s in stages)
    print(f"\n{'stage':<28} {'state':<10} {'seconds':>8}")
    for s in stages:
        print(f"{s['name']:<28} {s['state']:<10} {s['seconds']:>8.1f}")
    mode = "one process per stage" if args.one_process_per_stage else "stages hosted in-process"
    print(f"\n{'default' if args.default else 'tiny'} params, {mode}, {len(stages)} stage runs")
    print(f"total wall time        {total:8.1f} s  (server start {server_s:.1f} s, "
          f"reproduce run {parent['seconds']:.1f} s, {parent['state']})")
    print(f"stage work             {work:8.1f} s")
    print(f"orchestration overhead {total - work:8.1f} s  = {(total - work) / total:.1%} "
          f"(target <= 10%)")
    print(f"load average           {load_before[0]:.2f} before; after: "
          f"{' / '.join(f'{x:.2f}' for x in load_after)} (1 / 5 / 15 min; {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
