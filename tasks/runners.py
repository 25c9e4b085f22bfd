"""Prefect task runners built from the `runner` section of params.yaml.

Sharded flows map one task per shard (sample and score: a prompt shard; cross_sample: a cell;
decisive: a generator's responses; weighted: a run); the runner decides where those tasks run:

    flow.with_options(task_runner=make_runner(study.section(RunnerParams, "runner")))

`thread` is a local thread pool (of the stage's own width when it has one, e.g.
`cross_sample.resources.max_parallel`); `dask` and `ray` start a local cluster of `n_workers`
processes, or join an existing cluster when `runner.address` is set. Outputs are identical
across runners: each shard is a pure function of its inputs and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from rlvr.config import require


@dataclass(frozen=True)
class RunnerParams:
    """`runner`: where sharded tasks run; results do not depend on it.

    `thread` runs shards on a local thread pool; `dask`/`ray` start a local cluster with
    `n_workers` processes, or connect to an existing one when `address` is set (for example
    `tcp://10.0.0.5:8786` for a Dask scheduler, `ray://10.0.0.5:10001` or `auto` for Ray).
    """

    kind: Literal["thread", "dask", "ray"] = "thread"
    address: str = ""
    n_workers: int = 2

    def __post_init__(self) -> None:
        require(self.n_workers >= 1, "n_workers", f"must be >= 1, got {self.n_workers}",
                "use the number of worker processes (or threads) to start")
        require(not (self.kind == "thread" and self.address), "address",
                "is only used by `dask` and `ray`", "clear it or set runner.kind")


def make_runner(cfg: RunnerParams, threads: int | None = None) -> TaskRunner:
    """The Prefect task runner that `cfg` describes (cluster engines are imported lazily); a
    thread pool has `threads` workers when the stage sets its own width, else `n_workers`."""
    if cfg.kind == "thread":
        return ThreadPoolTaskRunner(max_workers=threads or cfg.n_workers)
    if cfg.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.address:
            return DaskTaskRunner(address=cfg.address)
        # one thread per worker process: torch already uses the cores of its process
        return DaskTaskRunner(cluster_kwargs={
            "n_workers": cfg.n_workers, "threads_per_worker": 1, "processes": True,
            "dashboard_address": None,
        })
    from prefect_ray import RayTaskRunner

    if cfg.address:
        return RayTaskRunner(address=cfg.address)
    return RayTaskRunner(init_kwargs={"num_cpus": cfg.n_workers, "include_dashboard": False})
