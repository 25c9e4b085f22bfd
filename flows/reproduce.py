"""Reproduce the pipeline through DVC, so every artifact is versioned.

`dvc repro` runs the stages whose inputs changed (a rerun after a crash resumes after the last
completed stage); with parameter overrides it is `dvc exp run -S section.key=value`, recorded as a
DVC experiment. `targets` limits the run to some stages and whatever they depend on. Every stage
run is a child of this run in the Prefect UI, and by default runs inside this process
(`rlvr.stagehost`: imports and Prefect set-up paid once, not once per stage).

Run:  python -m flows.reproduce [STAGE ...] [--force]   (what `make reproduce` runs; starts a
                                  Prefect server on 127.0.0.1 for the run unless one answers)
      python -m flows.reproduce --repo real          (the real pair: `make reproduce-real`)
      prefect deployment run 'reproduce/default'    (the same, on a worker; see `make serve`)
      prefect deployment run 'reproduce/sample' --params '{"params": {"sample": {"seed": 1}}}'
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow

from rlvr.config import load_params, run_main
from rlvr.dvc import StageFailed, experiment_name
from rlvr.layout import DATA_ROOT, Layout
from rlvr.sections import full_params
from rlvr.server import die_with_parent, ensure_server
from rlvr.study import load_study
from tasks.linking import quiet_checks, run_tags, tag_current_run
from tasks.reproduce import plan_command, run_dvc
from tasks.results import publish_run_summary


@flow(name="reproduce")
def reproduce(
    targets: list[str] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    force: bool = False,
    push: bool = False,
    repo: str = ".",
    in_process: bool = True,
) -> list[str]:
    """Bring `targets` (default: every stage) up to date with params.yaml plus `params`.

    `in_process=False` runs every stage in a process of its own (slower; isolates crashes).
    """
    # tag: the commit (and experiment) this run reproduces, whoever started it
    tag_current_run(run_tags(repo))

    # plan: dvc repro, or dvc exp run -S for the keys that differ from params.yaml
    command = plan_command(targets or [], params or {}, force, repo)

    # run: stale stages only, each a child run of this one; DVC's lines are logged here
    lines = run_dvc(command, repo, in_process)
    if experiment := experiment_name(lines):
        tag_current_run([f"exp:{experiment}"])

    # version: outputs are in the DVC cache already; optionally copy them to the remote
    if push:
        run_dvc(["dvc", "push", "dvc.yaml"], repo)

    # verify: nothing is left out of date or untracked
    run_dvc(["dvc", "status", "dvc.yaml"], repo)
    publish_run_summary(command, lines, Layout(Path(repo) / DATA_ROOT))
    return command


def rerun_under_server(module: str) -> None:
    """Without PREFECT_API_URL, start (or reuse) a server and run `python -m <module>` with this
    process's arguments as a child that sees it, then exit with the child's status; with one,
    return at once."""
    if os.environ.get("PREFECT_API_URL"):
        return
    # Prefect read its settings at import: run again as a child that sees the server's URL
    with ensure_server():
        # SIGKILL if this process dies: a flow run turns SIGTERM into an exception raised
        # wherever it lands, which can hang it (seen); its server is gone by then anyway
        child = subprocess.Popen([sys.executable, "-m", module, *sys.argv[1:]],
                                 preexec_fn=die_with_parent(signal.SIGKILL))
        try:
            child.wait()
        except KeyboardInterrupt:  # the child got the Ctrl-C too: let it record the crash
            child.wait(timeout=60)
    sys.exit(child.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="stages to bring up to date (default: all)")
    parser.add_argument("--force", action="store_true", help="rerun them even if up to date")
    parser.add_argument("--one-process-per-stage", action="store_true",
                        help="do not host stages in this process")
    parser.add_argument("--repo", default=".",
                        help="the pipeline's folder (its dvc.yaml, params.yaml, data/): `real`")
    args = parser.parse_args()
    # a bad params.yaml is the common user error: its one line, before any server starts
    if "family" in load_params(f"{args.repo}/params.yaml"):  # a study (any DVC project runs)
        full_params(load_study(f"{args.repo}/params.yaml"), Layout(Path(args.repo) / DATA_ROOT))
    rerun_under_server("flows.reproduce")
    quiet_checks()  # checks failing inside the flow: the one line, not Prefect's tracebacks
    try:
        reproduce(args.targets, force=args.force, repo=args.repo,
                  in_process=not args.one_process_per_stage)
    except StageFailed as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
