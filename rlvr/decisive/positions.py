"""The decisive stage's library half: measured decisiveness of a pair's responses, as a table.

For each generator of the pair (`base`, `tuned`), the first `n_prompts` prompts x
`samples_per_prompt` samples of the sample stage are measured (`rlvr.decisive.values`) at every
position, or at `positions` random ones per response (the budget knob for long real responses:
rollouts ~ K x measured positions x the share of draws that leave the response). Rows go to

    <decisive>/positions/model=<generator>/part-00000.parquet      (view `decisiveness`)

with the schema `rlvr.store.tables.DECISIVE_SCHEMA`. Then `sql/decisive/agg_decisive_*.sql`
join them to the token table and measure how well js, base entropy and |Δ log-prob| find the
positions whose measured |ΔV| is large.

`plan_decisive` checks every input before the stage touches an output: the samples and token
tables are complete and hold the pair's partitions, each generator's model is whole and finite
(`rlvr.models.checks.check_model`), its samples exist and share one sampling setting.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from rlvr.config import require
from rlvr.decisive.values import Measured, bootstrap_delta, measure_values, wilson
from rlvr.generation.sampler import SamplingParams
from rlvr.layout import Layout
from rlvr.models.checks import check_model
from rlvr.models.loading import load_spec, pin_torch_threads
from rlvr.models.specs import ModelEntry, ModelsParams, resolve
from rlvr.store.atomic import is_complete, keep_only, sweep_debris, write_json
from rlvr.store.experiment_gates import check_decisiveness
from rlvr.store.gates import read_files
from rlvr.store.hashing import fingerprint
from rlvr.store.tables import (
    DECISIVE_SCHEMA,
    clear_complete,
    finalize_dataset,
    pair_name,
    part_fingerprint,
    part_is_current,
    part_path,
    read_partition,
    samples_dir,
    to_table,
    tokens_dir,
    write_part,
)
from rlvr.testbed.graders import get_grader
from rlvr.tokens.analysis import write_table
from rlvr.warehouse.sql import list_queries, run_sql
from rlvr.warehouse.views import connect, views

GENERATORS = ("base", "tuned")


@dataclass(frozen=True)
class DecisiveResources:
    """`decisive.resources`: speed only (not fingerprinted, not DVC params)."""

    batch_size: int = 512  # rows per teacher-forced forward and per rollout batch

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "batch_size", "must be >= 1", "use a positive integer")


@dataclass(frozen=True)
class DecisiveParams:
    """`decisive`: measured decisiveness of the (base, tuned) pair's sampled responses, and how
    well the token-table signals find it. Rollouts sample as the responses were sampled, and
    are graded by `sample.grader`."""

    base: str = "base"
    tuned: str = "rl"
    generators: list[str] = field(default_factory=lambda: ["base", "tuned"])
    n_prompts: int = 48  # the first N prompts of the samples
    samples_per_prompt: int = 2  # sample ids 0..N-1 of each
    positions: int = 0  # measured positions per response: 0 = all, else a random sample
    rollouts: int = 32  # K per position (common random numbers; see rlvr.decisive.values)
    seed: int = 0  # rollout streams and position sampling
    pivot_cuts: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3])  # |ΔV| cuts
    flag_shares: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])  # top shares
    n_bootstrap: int = 1000  # ΔV interval replicates
    alpha: float = 0.05
    resources: DecisiveResources = field(default_factory=DecisiveResources)

    def __post_init__(self) -> None:
        require(bool(self.generators) and set(self.generators) <= set(GENERATORS)
                and len(set(self.generators)) == len(self.generators), "generators",
                f"{self.generators} is not a list of distinct {list(GENERATORS)}",
                "use e.g. [base, tuned]")
        require(self.base != self.tuned, "tuned", "is the base model", "name another model")
        for key in ("n_prompts", "samples_per_prompt", "rollouts", "n_bootstrap"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")
        require(self.positions >= 0, "positions", "must be >= 0", "use 0 (all) or e.g. 16")
        require(bool(self.pivot_cuts) and all(0 < c <= 1 for c in self.pivot_cuts),
                "pivot_cuts", f"need |ΔV| cuts in (0, 1], got {self.pivot_cuts}",
                "use e.g. [0.1, 0.2, 0.3]")
        require(bool(self.flag_shares) and all(0 < q < 1 for q in self.flag_shares),
                "flag_shares", f"need shares in (0, 1), got {self.flag_shares}",
                "use e.g. [0.05, 0.1, 0.2]")
        require(0 < self.alpha < 1, "alpha", "must be in (0, 1)", "use 0.05")

    def model_of(self, generator: str) -> str:
        return self.base if generator == "base" else self.tuned

    def result_fields(self) -> dict[str, object]:
        """What of these knobs changes a table row: part of the part files' fingerprint."""
        out = asdict(self)
        for key in ("resources", "pivot_cuts", "flag_shares", "base", "tuned", "generators"):
            out.pop(key)
        return out


def select_items(table: pa.Table, cfg: DecisiveParams) -> list[Measured]:
    """The responses to measure (first prompts in file order, first sample ids) and their
    positions: all, or `cfg.positions` drawn per response from a stream of (seed, response)."""
    rows = table.to_pylist()
    prompts = list(dict.fromkeys(r["prompt_id"] for r in rows))[: cfg.n_prompts]
    keep = set(prompts)
    items = []
    for r in sorted((r for r in rows if r["prompt_id"] in keep
                     and r["sample_id"] < cfg.samples_per_prompt),
                    key=lambda r: (prompts.index(r["prompt_id"]), r["sample_id"])):
        key = f"decisive/{r['prompt_id']}/{r['sample_id']}"
        n = len(r["response_token_ids"])
        positions = list(range(n))
        if cfg.positions and cfg.positions < n:
            positions = sorted(random.Random(f"{cfg.seed}/{key}").sample(positions,
                                                                         cfg.positions))
        items.append(Measured(key, r["prompt_token_ids"], r["response_token_ids"], r["answer"],
                              int(r["reward"]), positions, int(r["max_new_tokens"])))
    return items


def sampling_of(table: pa.Table, seed: int) -> SamplingParams:
    """How the responses were drawn (the samples' own temperature and top-p): rollouts continue
    them the same way, with the rollout streams' `seed`."""
    settings = {(round(t, 6), round(p, 6)) for t, p in zip(
        table.column("temperature").to_pylist(), table.column("top_p").to_pylist(), strict=True)}
    if len(settings) != 1:
        raise ValueError(f"the samples mix sampling settings {sorted(settings)}; rerun the sample "
                         "stage (`dvc repro sample`) so one model's responses share them")
    (temperature, top_p), = settings
    return SamplingParams(temperature, top_p, int(max(table.column("max_new_tokens").to_pylist())),
                          seed)


@dataclass(frozen=True)
class DecisiveJob:
    """One generator's measurement: its model, its samples partition, its part file."""

    generator: str  # "base" or "tuned"
    entry: ModelEntry
    samples: str
    out_path: str


def plan_decisive(
    cfg: DecisiveParams, grader: str, models: ModelsParams, layout: Layout
) -> list[DecisiveJob]:
    """Check every input of the decisive stage (see the module docstring); one job per
    generator."""
    get_grader(grader)
    for table, directory, stage in (("samples", layout.samples_dir, "sample"),
                                    ("token", layout.tokens_dir, "score")):
        if not is_complete(directory):
            raise ValueError(f"the {table} table {directory} is not complete: run the {stage} "
                             f"stage first (dvc repro {stage})")
    pair = pair_name(cfg.base, cfg.tuned)
    jobs = []
    for generator in cfg.generators:
        if not tokens_dir(layout.tokens_dir, pair, generator).is_dir():
            raise ValueError(f"params.yaml `decisive.base`/`decisive.tuned`: no pair {pair!r} "
                             f"(generator {generator}) in the token table {layout.tokens_dir}; "
                             "add the models to `score.base`/`score.tuned` and run `dvc repro "
                             "score`")
        entry = resolve(cfg.model_of(generator), models, layout)
        check_model(entry.spec)
        source = samples_dir(layout.samples_dir, entry.name)
        if not any(source.glob("part-*.parquet")):
            raise ValueError(f"params.yaml `decisive.{generator}`: no samples of model "
                             f"{entry.name!r}; add it to `sample.models` and run `dvc repro "
                             "sample`")
        sampling_of(read_partition(source, ["temperature", "top_p", "max_new_tokens"]), cfg.seed)
        out = part_path(layout.decisive_dir / "positions" / f"model={entry.name}", 0)
        jobs.append(DecisiveJob(generator, entry, str(source), str(out)))
    return jobs


def measure_generator(
    job: DecisiveJob, cfg: DecisiveParams, grader: str, progress: bool = False
) -> dict:
    """Measure one generator's responses into its part file (kept when current). Runs torch
    single-threaded (`pin_torch_threads`)."""
    pin_torch_threads()
    entry, source, out = job.entry, Path(job.samples), Path(job.out_path)
    key = fingerprint(model=entry.spec.identity(), name=entry.name, kind=entry.kind,
                      samples=[part_fingerprint(p) for p in sorted(source.glob("part-*.parquet"))],
                      params=cfg.result_fields(), grader=grader)
    if part_is_current(out, key):
        return {"model": entry.name, "path": str(out), "skipped": True}
    table = read_partition(source)
    items = select_items(table, cfg)
    model, tokenizer = load_spec(entry.spec)
    start = time.perf_counter()
    values, cost = measure_values(model, tokenizer, items, cfg.rollouts,
                                  sampling_of(table, cfg.seed), get_grader(grader),
                                  cfg.resources.batch_size, progress)
    rows = position_rows(entry.name, entry.kind, items, values, cfg)
    write_part([rows], out, DECISIVE_SCHEMA, key)
    return {"model": entry.name, "path": str(out), "skipped": False, "responses": len(items),
            "positions": rows.num_rows, "seconds": time.perf_counter() - start, **cost}


def position_rows(model: str, kind: str, items: list[Measured], values: list,
                  cfg: DecisiveParams) -> pa.Table:
    """The decisiveness rows of measured items, with Wilson and bootstrap intervals."""
    before = np.concatenate([v.before for v in values])
    after = np.concatenate([v.after for v in values])
    k = cfg.rollouts
    cols: dict[str, object] = {
        "model": [model] * len(before), "model_kind": [kind] * len(before),
        "prompt_id": [m.key.split("/")[1] for m in items for _ in m.positions],
        "sample_id": [int(m.key.split("/")[2]) for m in items for _ in m.positions],
        "position": [t for m in items for t in m.positions],
        "n_tokens": [len(m.response_ids) for m in items for _ in m.positions],
        "token_id": [m.response_ids[t] for m in items for t in m.positions],
        "reward": [m.reward for m in items for _ in m.positions],
        "prob_token": np.concatenate([v.prob_token for v in values]),
        "n_rollouts": [k] * len(before),
        "n_resampled_other": np.concatenate([v.resampled_other for v in values]),
        "value_before": before.mean(1), "value_after": after.mean(1),
        "delta_value": (after.astype(int) - before.astype(int)).mean(1),
    }
    for name, outcome in (("value_before", before), ("value_after", after)):
        cols[f"{name}_low"], cols[f"{name}_high"] = wilson(outcome.sum(1), k, cfg.alpha)
    cols["delta_low"], cols["delta_high"] = bootstrap_delta(before, after, cfg.n_bootstrap,
                                                            cfg.alpha, cfg.seed)
    return to_table(cols, DECISIVE_SCHEMA)


def decisive_sql_params(cfg: DecisiveParams) -> dict[str, object]:
    """The `$parameters` of sql/decisive/*.sql."""
    return {"pair": pair_name(cfg.base, cfg.tuned), "pivot_cuts": cfg.pivot_cuts,
            "flag_shares": cfg.flag_shares}


def run_detection(layout: Layout, cfg: DecisiveParams) -> dict[str, pa.Table]:
    """Run every sql/decisive query; write results, the plot CSV and the metrics."""
    con = connect(layout.root)
    for needed, stage in (("decisiveness", "decisive"), ("tokens", "score")):
        if needed not in views(con):
            raise ValueError(f"no complete `{needed}` table under {layout.root}; run the "
                             f"{stage} stage first (`dvc repro {stage}`)")
    results = {name: run_sql(con, name, decisive_sql_params(cfg))
               for name in list_queries("agg_decisive", stage="decisive")}
    for name, table in results.items():
        write_table(table, layout.decisive_dir / f"{name}.parquet")
    write_table(results["agg_decisive_detection"], layout.plot("decisive_detection"))
    return results


def headline(results: dict[str, pa.Table], runs: list[dict], cfg: DecisiveParams) -> dict:
    """Precision/recall/AUC at the middle cut and share, role shares, and the cost."""
    cut = sorted(cfg.pivot_cuts)[len(cfg.pivot_cuts) // 2]
    share = sorted(cfg.flag_shares)[len(cfg.flag_shares) // 2]
    out: dict[str, dict] = {}
    for r in results["agg_decisive_detection"].to_pylist():
        if math.isclose(r["pivot_cut"], cut) and math.isclose(r["flag_share"], share):
            g = out.setdefault(r["generator"], {"pivot_cut": cut, "flag_share": share})
            g["n_positions"], g["share_pivotal"] = r["n_positions"], r["base_rate"]
            for key in ("precision", "recall", "auc"):
                g[f"{r['signal']}_{key}"] = _round(r[key])
    for r in results["agg_decisive_roles"].to_pylist():
        if math.isclose(r["pivot_cut"], cut):
            out.setdefault(r["generator"], {}).setdefault("share_pivotal_by_role", {})[
                r["role"]] = _round(r["share_pivotal"])
    return {"pair": pair_name(cfg.base, cfg.tuned), "generators": out,
            "cost": [{k: v for k, v in run.items() if k != "path"} for run in runs]}


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def gate_run(layout: Layout, run: dict, cfg: DecisiveParams) -> dict:
    """Gate one generator's part file (`rlvr.store.experiment_gates.check_decisiveness`): its
    rows are exactly the positions `select_items` picks from the samples, and agree with them."""
    source = read_partition(samples_dir(layout.samples_dir, run["model"]))
    expected = pd.DataFrame(
        [(m.key.split("/")[1], int(m.key.split("/")[2]), t)
         for m in select_items(source, cfg) for t in m.positions],
        columns=["prompt_id", "sample_id", "position"])
    return check_decisiveness(
        read_files([run["path"]]), source.to_pandas(), expected, cfg.rollouts,
        cfg.positions == 0, f"decisiveness_{run['model']}",
        layout.quality_dir("decisiveness") / f"{run['model']}.json")


def publish(layout: Layout, runs: list[dict], cfg: DecisiveParams) -> None:
    """Gate every generator's part, drop stale part files and mark the decisiveness table
    complete."""
    for run in runs:
        gate_run(layout, run, cfg)
    keep_only(layout.quality_dir("decisiveness"), {f"{r['model']}.json" for r in runs})
    finalize_dataset(layout.decisive_dir / "positions", [r["path"] for r in runs])


def claim_outputs(layout: Layout) -> None:
    """After the checks: sweep what killed runs left, withdraw the table's completion marker
    before its parts are rewritten (finished parts stay: `persist` in dvc.yaml)."""
    sweep_debris(*layout.outputs("decisive"))
    positions = layout.decisive_dir / "positions"
    positions.mkdir(parents=True, exist_ok=True)
    clear_complete(positions)


def write_metrics(layout: Layout, metrics: dict) -> None:
    write_json(metrics, layout.metrics("decisive"))

