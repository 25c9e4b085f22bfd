"""Benchmark: every `sql/` analysis on a synthetic token table of 10M rows in the real schema.

Writes the table (hive-partitioned by pair and generator, like the scorer) to a temporary
directory (or `--keep DIR`, reused when it exists), opens the warehouse on it and times each
query (fastest of `--repeat` runs): wall time, and CPU time of the process (all DuckDB
threads), which other jobs on a shared machine disturb less. Target: all of them together
under 30 s on 2 cores. Each query also runs on a baseline connection where DuckDB reads the
files itself (`rlvr setup`'s views, no lock), the two taking turns to go first: the ratio is
the price of the read-only warehouse (pyarrow reads the files, DuckDB has no file access).
Target: about 1 (<= 1.25).
Run: `nice -n 15 .venv/bin/python benchmarks/bench_sql.py [--rows N] [--threads T] [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlvr.store.atomic import MARKER
from rlvr.store.tables import TOKENS_SCHEMA
from rlvr.testbed.digits import ROLES
from rlvr.tokens.analysis import AnalyzeParams, analysis_queries
from rlvr.warehouse.sql import run_sql
from rlvr.warehouse.views import connect, setup_sql

PAIRS = ["base__rl", "base__sft", "base__rft"] + [f"base__rl_step_{s}" for s in (20, 40, 60, 80)]
PARAMS = AnalyzeParams().sql_params()  # the defaults of params.yaml `analyze`


def synthetic_group(pair: str, generator: str, n_rows: int, seed: int) -> pa.Table:
    """One (pair, generator) block of token rows with plausible value distributions."""
    # responses share their shape across pairs (same seed), as base responses do in the study
    shape = np.random.default_rng(0 if generator == "base" else seed)
    lengths = shape.integers(8, 56, size=n_rows // 8)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n_rows) + 1]
    n = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(n) - starts
    response = np.repeat(np.arange(len(lengths)), lengths)
    rng = np.random.default_rng(seed)
    divergent = rng.random(n) < 0.12
    js = np.where(divergent, rng.uniform(0.02, 0.69, n), rng.exponential(1e-3, n)).clip(0, 0.69)
    overlaps = [np.floor(rng.uniform(0, k + 1, n)) / k for k in range(1, 6)]
    rank = np.minimum(rng.geometric(0.5, n), 100)
    tuned = pair.split("__")[1]
    step = int(tuned.rsplit("_", 1)[1]) if tuned.startswith("rl_step_") else None
    cols = {
        "pair": pa.array([pair] * n),
        "generator": pa.array([generator] * n),
        "tuned_kind": pa.array(["checkpoint" if step else tuned] * n),
        "rl_step": pa.array([step] * n, pa.int32()),
        "prompt_id": pa.array([f"sum-{r // 4}" for r in range(len(lengths))]).take(response),
        "sample_id": (response % 4).astype(np.int32),
        "position": position.astype(np.int32),
        "n_tokens": np.repeat(lengths, lengths).astype(np.int32),
        "token_id": rng.integers(0, 112, n).astype(np.int32),
        "role": pa.array(list(ROLES)).take(rng.integers(0, len(ROLES), n)),
        "reward": np.repeat(rng.integers(0, 2, len(lengths)), lengths).astype(np.int8),
        "logprob_base": -rng.exponential(1.0, n).astype(np.float32),
        "logprob_tuned": -rng.exponential(1.0, n).astype(np.float32),
        "entropy_base": rng.gamma(1.0, 0.6, n).astype(np.float32),
        "entropy_tuned": rng.gamma(1.0, 0.5, n).astype(np.float32),
        "js": js.astype(np.float32),
        "js_top_p": (js + rng.normal(0, 0.01, n)).clip(0, 0.69).astype(np.float32),
        "kl_base_tuned": (2 * js).astype(np.float32),
        "kl_tuned_base": (2 * js).astype(np.float32),
        "rank_base": rng.geometric(0.6, n).astype(np.int32),
        "rank_tuned": rng.geometric(0.6, n).astype(np.int32),
        "top1_base": rng.integers(0, 112, n).astype(np.int32),
        "top1_tuned": rng.integers(0, 112, n).astype(np.int32),
        "rank_in_base_of_top1_tuned": rank.astype(np.int32),
        "rank_in_tuned_of_top1_base": np.where(rank == 1, 1, rng.integers(2, 6, n)).astype(
            np.int32),
        "prob_base_of_top1_tuned": (0.9 / rank).astype(np.float32),
        **{f"topk_overlap_{k}": o.astype(np.float32) for k, o in enumerate(overlaps, 1)},
    }
    cols["token_text"] = pa.array([str(i) for i in range(112)]).take(pa.array(cols["token_id"]))
    cols["delta_logprob"] = cols["logprob_tuned"] - cols["logprob_base"]
    return pa.table(cols).select(TOKENS_SCHEMA.names).cast(TOKENS_SCHEMA)


def write_tokens(root: Path, n_rows: int) -> None:
    """Write `n_rows` synthetic token rows under `root`, one partition per pair and generator."""
    groups = [(p, g) for p in PAIRS for g in ("base", "tuned")]
    for i, (pair, generator) in enumerate(groups):
        part = root / f"pair={pair}" / f"generator={generator}"
        part.mkdir(parents=True)
        pq.write_table(synthetic_group(pair, generator, n_rows // len(groups), seed=i + 1),
                       part / "part-0.parquet")
    (root / MARKER).write_text("ok\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="data directory to write once and reuse")
    parser.add_argument("--only", nargs="*", help="time only these queries")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each query on each path, the fastest kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp:
        data = args.keep or Path(tmp)
        if not (data / "tokens" / MARKER).exists():
            t0 = time.perf_counter()
            write_tokens(data / "tokens", args.rows)
            print(f"wrote the table in {time.perf_counter() - t0:.1f} s")
        con = connect(data, threads=args.threads)
        baseline = duckdb.connect(config={"threads": args.threads})
        for statement in setup_sql(data):
            baseline.sql(statement)
        n = con.sql("select count(*) from tokens").fetchall()[0][0]
        print(f"{n:,} token rows, {args.threads} DuckDB threads")
        totals = {"warehouse": [0.0, 0.0], "baseline": [0.0, 0.0]}
        names = args.only or analysis_queries()
        paths = [("warehouse", con), ("baseline", baseline)]
        for name in names:
            best: dict[str, tuple[float, float]] = {}
            for rep in range(args.repeat):  # alternate which path meets a warm page cache
                for label, c in paths[:: 1 if rep % 2 == 0 else -1]:
                    t, cpu = time.perf_counter(), time.process_time()
                    result = run_sql(c, name, PARAMS)
                    dt, dc = time.perf_counter() - t, time.process_time() - cpu
                    best[label] = min(best.get(label, (dt, dc)), (dt, dc))
            for label, (dt, dc) in best.items():
                totals[label][0] += dt
                totals[label][1] += dc
            shown = [f"{label} wall {dt:6.2f} s cpu {dc:6.2f} s" for label, (dt, dc) in
                     best.items()]
            print(f"{name:32s} {'  '.join(shown)}  {result.num_rows:6d} rows")
        wall, cpu = totals["warehouse"]
        base_wall, base_cpu = totals["baseline"]
        verdict = "meets" if wall < 30 else "misses"
        print(f"all {len(names)} analyses: wall {wall:.1f} s, cpu {cpu:.1f} s "
              f"({verdict} the 30 s wall target; load average {os.getloadavg()[0]:.1f})")
        print(f"read-only warehouse vs DuckDB reading the files: wall {wall / base_wall:.2f}x "
              f"({base_wall:.1f} s), cpu {cpu / base_cpu:.2f}x ({base_cpu:.1f} s)")


if __name__ == "__main__":
    main()
