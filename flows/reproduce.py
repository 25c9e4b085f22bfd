"""Reproduce the pipeline through DVC, so every artifact is versioned.

`dvc repro` runs the stages whose inputs changed (a rerun after a crash resumes after the last
completed stage); with parameter overrides it is `dvc exp run -S section.key=value`, recorded as a
DVC experiment. `targets` limits the run to some stages and whatever they depend on.

Run:  python -m flows.reproduce                     (the whole pipeline, params.yaml as is)
      prefect deployment run 'reproduce/default'    (the same, on a worker; see `make serve`)
      prefect deployment run 'reproduce/sample' --params '{"params": {"sample": {"seed": 1}}}'
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.reproduce import plan_command, run_dvc


@flow(name="reproduce")
def reproduce(
    targets: list[str] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    force: bool = False,
    push: bool = False,
    repo: str = ".",
) -> list[str]:
    """Bring `targets` (default: every stage) up to date with params.yaml plus `params`."""
    # plan: dvc repro, or dvc exp run -S for the keys that differ from params.yaml
    command = plan_command(targets or [], params or {}, force, repo)

    # run: stale stages only; each stage is `python -m flows.<stage>`, logged here line by line
    run_dvc(command, repo)

    # version: outputs are in the DVC cache already; optionally copy them to the remote
    if push:
        run_dvc(["dvc", "push"], repo)

    # verify: nothing is left out of date or untracked
    run_dvc(["dvc", "status"], repo)
    return command


if __name__ == "__main__":
    reproduce()
