"""The study under several training seeds: the whole pipeline once per seed, then the spread.

Seed k adds k to every training seed of the workspace (`rlvr.seeds`): seed 0 is the workspace
itself, seed k > 0 the workspace `seeds/seed_<k>/` inside it (its own DVC project). Each runs
as the `reproduce` flow (a child run of this one; up-to-date stages are skipped, so a rerun
resumes), then seeds/summary.json and seeds/summary.md give every model's held-out accuracy
and every finding's verdict and numbers per seed, with their spread.

Run:  python -m flows.seeds --seeds 3             (the toy at the root: seeds 0, 1, 2)
      python -m flows.seeds --seeds 3 --repo real (the smollm2 pair: three times its hour)
      python -m flows.seeds --seeds 3 --summary-only
"""

from __future__ import annotations

import argparse
import time

from prefect import flow, get_run_logger

from flows.reproduce import reproduce, rerun_under_server
from rlvr.config import run_main
from tasks.seeds import check_seeds_task, seed_workspace_task, summarize_seeds_task


@flow(name="seeds")
def seeds(chosen: list[int], repo: str = ".", targets: list[str] | None = None,
          summarize_only: bool = False) -> dict:
    """Reproduce `targets` (default: everything) of `repo` under each seed, then summarise."""
    logger = get_run_logger()
    # check: the study trains something, the seeds are distinct
    keys = check_seeds_task(repo, chosen)
    logger.info("seeds %s shift %s", chosen, ", ".join(keys))
    # run: one reproduce run per seed, in its own workspace
    seconds: dict[int, float] = {}
    for k in [] if summarize_only else chosen:
        ws = seed_workspace_task(repo, k)
        start = time.perf_counter()
        reproduce.with_options(flow_run_name=f"seed-{k}")(targets, repo=ws)
        seconds[k] = time.perf_counter() - start
        logger.info("seed %d: %.0f s", k, seconds[k])
    # compare: accuracies and verdicts over seeds
    return summarize_seeds_task(repo, chosen, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--repo", default=".", help="the workspace (`real` for the smollm2 pair)")
    parser.add_argument("--summary-only", action="store_true",
                        help="only summarise seeds that already ran")
    parser.add_argument("targets", nargs="*", help="stages to bring up to date (default: all)")
    args = parser.parse_args()
    rerun_under_server("flows.seeds")
    seeds(list(range(args.seeds)), args.repo, args.targets or None, args.summary_only)


if __name__ == "__main__":
    run_main(main)
