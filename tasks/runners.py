"""Prefect task runners built from the `runner` section of params.yaml.

Sharded flows (sample, score) map one task per shard; the runner decides where those tasks run:

    flow.with_options(task_runner=make_runner(from_section(RunnerConfig, params, "runner")))

`thread` is a local thread pool; `dask` and `ray` start a local cluster of `n_workers` processes,
or join an existing cluster when `runner.address` is set. Outputs are identical across runners:
each shard is a pure function of its inputs and seed.
"""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from rlvr.config import RunnerConfig


def make_runner(cfg: RunnerConfig) -> TaskRunner:
    """The Prefect task runner that `cfg` describes (cluster engines are imported lazily)."""
    if cfg.kind == "thread":
        return ThreadPoolTaskRunner(max_workers=cfg.n_workers)
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
