"""The decisive stage's library half: measured decisiveness of a pair's responses, as a table.

For each generator of the pair (`base`, `tuned`), the first `n_prompts` prompts x
`samples_per_prompt` samples of the sample stage are measured under `design`
(`rlvr.decisive.measurement`): `exhaustive`, K rollouts at every position or at `positions`
random ones per response (the reference); `stratified`, positions drawn by strata of JS and
base entropy and rolled out sequentially (`rlvr.decisive.design`, `rlvr.decisive.sequential`).
Every position of a measured response gets a row, with its stratum and inclusion probability:

    <decisive>/positions/model=<generator>/part-00000.parquet      (view `decisiveness`)

with the schema `rlvr.store.tables.DECISIVE_SCHEMA`. Then `sql/decisive/` joins them to the
token table and `rlvr.decisive.estimates` measures, weighting by the design, how well js, base
entropy and |Δ log-prob| find the positions whose measured |ΔV| is large.

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
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from rlvr.config import require
from rlvr.decisive.estimates import detection
from rlvr.decisive.measurement import measure_exhaustive, measure_stratified
from rlvr.decisive.values import Measured
from rlvr.generation.sampler import SamplingParams
from rlvr.layout import Layout
from rlvr.models.checks import check_model
from rlvr.models.loading import load_spec, pin_torch_threads
from rlvr.models.specs import ModelEntry, ModelsParams, resolve
from rlvr.store.atomic import keep_only, sweep_debris, write_json
from rlvr.store.experiment_gates import check_decisiveness
from rlvr.store.gates import read_files
from rlvr.store.hashing import fingerprint
from rlvr.store.registry import SAMPLES, TOKENS, TableIncomplete
from rlvr.store.tables import (
    DECISIVE_SCHEMA,
    clear_complete,
    finalize_dataset,
    pair_name,
    part_fingerprint,
    part_is_current,
    part_path,
    samples_dir,
    to_table,
    tokens_dir,
    write_part,
)
from rlvr.testbed.graders import get_grader
from rlvr.tokens.analysis import write_table
from rlvr.warehouse.sql import run_sql
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
    # exhaustive: K rollouts at every position (or `positions` random ones per response), the
    # reference; stratified: strata by JS and entropy, sequential rollouts (rlvr.decisive.design)
    design: Literal["exhaustive", "stratified"] = "exhaustive"
    positions: int = 0  # exhaustive: measured positions per response, 0 = all
    rollouts: int = 32  # exhaustive: K per position (common random numbers)
    stratum_share: float = 0.1  # stratified: the js and entropy strata, top share of open positions
    per_stratum: int = 24  # stratified: positions drawn from each of the js and entropy strata
    uniform_positions: int = 64  # stratified: drawn from the uniform stratum (the other open ones)
    min_rollouts: int = 8  # stratified: diverging rollouts in a position's first round
    max_rollouts: int = 32  # stratified: at most this many per position (rounds double)
    seed: int = 0  # rollout streams and position sampling
    pivot_cuts: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3])  # |ΔV| cuts
    flag_shares: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])  # top shares
    n_bootstrap: int = 1000  # ΔV interval replicates; share and AUC interval replicates
    alpha: float = 0.05
    resources: DecisiveResources = field(default_factory=DecisiveResources)

    def __post_init__(self) -> None:
        require(bool(self.generators) and set(self.generators) <= set(GENERATORS)
                and len(set(self.generators)) == len(self.generators), "generators",
                f"{self.generators} is not a list of distinct {list(GENERATORS)}",
                "use e.g. [base, tuned]")
        require(self.base != self.tuned, "tuned", "is the base model", "name another model")
        for key in ("n_prompts", "samples_per_prompt", "rollouts", "n_bootstrap",
                    "per_stratum", "uniform_positions", "min_rollouts"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")
        require(self.positions >= 0, "positions", "must be >= 0", "use 0 (all) or e.g. 16")
        require(self.design == "exhaustive" or self.positions == 0, "positions",
                f"is {self.positions} with design `stratified`, which picks its own positions",
                "set it to 0 (or use design: exhaustive)")
        require(self.max_rollouts >= self.min_rollouts, "max_rollouts",
                f"{self.max_rollouts} is below min_rollouts {self.min_rollouts}",
                "use e.g. min_rollouts: 8, max_rollouts: 64")
        require(0 < self.stratum_share < 0.5, "stratum_share", "must be in (0, 0.5)",
                "use e.g. 0.1")
        require(bool(self.pivot_cuts) and all(0 < c <= 1 for c in self.pivot_cuts),
                "pivot_cuts", f"need |ΔV| cuts in (0, 1], got {self.pivot_cuts}",
                "use e.g. [0.1, 0.2, 0.3]")
        require(bool(self.flag_shares) and all(0 < q < 1 for q in self.flag_shares),
                "flag_shares", f"need shares in (0, 1), got {self.flag_shares}",
                "use e.g. [0.05, 0.1, 0.2]")
        require(0 < self.alpha < 1, "alpha", "must be in (0, 1)", "use 0.05")

    @property
    def stop_cut(self) -> float:
        """The cut a sequential position stops on (the middle one, the headline's): settling
        every cut would roll out to the cap any position near the smallest one."""
        return sorted(self.pivot_cuts)[len(self.pivot_cuts) // 2]

    def model_of(self, generator: str) -> str:
        return self.base if generator == "base" else self.tuned

    def result_fields(self) -> dict[str, object]:
        """What of these knobs changes a table row: part of the part files' fingerprint."""
        out = asdict(self)
        drop = ["resources", "flag_shares", "base", "tuned", "generators"]
        drop += (["stratum_share", "per_stratum", "uniform_positions", "min_rollouts",
                  "max_rollouts", "pivot_cuts"]
                 if self.design == "exhaustive" else ["positions", "rollouts"])
        for key in drop:
            out.pop(key)
        return out


def select_items(table: pa.Table, cfg: DecisiveParams) -> list[Measured]:
    """The responses to measure (first prompts in file order, first sample ids) and their
    positions: all, or `cfg.positions` drawn per response from a stream of (seed, response)
    (the exhaustive design; the stratified one starts from all and picks its own)."""
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
        if cfg.design == "exhaustive" and cfg.positions and cfg.positions < n:
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
    tokens: str  # the pair's token partition of this generator (the design's signals)
    out_path: str


def plan_decisive(
    cfg: DecisiveParams, grader: str, models: ModelsParams, layout: Layout
) -> list[DecisiveJob]:
    """Check every input of the decisive stage (see the module docstring); one job per
    generator."""
    get_grader(grader)
    for table in (SAMPLES, TOKENS):
        table.files(layout)  # TableIncomplete names the stage to run
    pair = pair_name(cfg.base, cfg.tuned)
    jobs = []
    for generator in cfg.generators:
        signals = tokens_dir(layout.tokens_dir, pair, generator)
        if not signals.is_dir():
            raise ValueError(f"params.yaml `decisive.base`/`decisive.tuned`: no pair {pair!r} "
                             f"(generator {generator}) in the token table {layout.tokens_dir}; "
                             "add the models to `score.base`/`score.tuned` and run `dvc repro "
                             "score`")
        entry = resolve(cfg.model_of(generator), models, layout)
        check_model(entry.spec)
        source = samples_dir(layout.samples_dir, entry.name)
        try:
            sampling = SAMPLES.read(layout, ["temperature", "top_p", "max_new_tokens"],
                                    model=entry.name)
        except TableIncomplete as e:
            raise ValueError(f"params.yaml `decisive.{generator}`: no samples of model "
                             f"{entry.name!r}; add it to `sample.models` and run `dvc repro "
                             "sample`") from e
        sampling_of(sampling, cfg.seed)
        out = part_path(layout.decisive_dir / "positions" / f"model={entry.name}", 0)
        jobs.append(DecisiveJob(generator, entry, str(source), str(signals), str(out)))
    return jobs


def measure_generator(
    job: DecisiveJob, cfg: DecisiveParams, grader: str, progress: bool = False
) -> dict:
    """Measure one generator's responses into its part file (kept when current). Runs torch
    single-threaded (`pin_torch_threads`)."""
    pin_torch_threads()
    entry, out = job.entry, Path(job.out_path)
    sources = SAMPLES.partition_files(job.samples)
    parts = TOKENS.partition_files(job.tokens) if cfg.design != "exhaustive" else []
    key = fingerprint(model=entry.spec.identity(), name=entry.name, kind=entry.kind,
                      samples=[part_fingerprint(p) for p in sources],
                      signals=[part_fingerprint(p) for p in parts], params=cfg.result_fields(),
                      grader=grader, columns=DECISIVE_SCHEMA.names)
    if part_is_current(out, key):
        return {"model": entry.name, "path": str(out), "skipped": True}
    table = SAMPLES.read_files(sources)
    items = select_items(table, cfg)
    model, tokenizer = load_spec(entry.spec)
    sampling = sampling_of(table, cfg.seed)
    start = time.perf_counter()
    measure = measure_exhaustive if cfg.design == "exhaustive" else measure_stratified
    cols, cost = measure(model, tokenizer, items, sampling, get_grader(grader), cfg,
                         job.tokens, entry.name, progress)
    cols = {"model": entry.name, "model_kind": entry.kind,
            "prompt_id": [m.key.split("/")[1] for m in items for _ in m.response_ids],
            "sample_id": [int(m.key.split("/")[2]) for m in items for _ in m.response_ids],
            "position": [t for m in items for t in range(len(m.response_ids))],
            "n_tokens": [len(m.response_ids) for m in items for _ in m.response_ids],
            "token_id": [y for m in items for y in m.response_ids],
            "reward": [m.reward for m in items for _ in m.response_ids], **cols}
    n = len(cols["position"])
    rows = to_table({k: [v] * n if isinstance(v, str) else v for k, v in cols.items()},
                    DECISIVE_SCHEMA)
    write_part([rows], out, DECISIVE_SCHEMA, key)
    return {"model": entry.name, "path": str(out), "skipped": False, "responses": len(items),
            "positions": n, "measured": int(np.sum(np.asarray(cols["status"]) != "unsampled")),
            "seconds": time.perf_counter() - start, **cost}


def decisive_sql_params(cfg: DecisiveParams) -> dict[str, object]:
    """The `$parameters` of sql/decisive/*.sql."""
    return {"pair": pair_name(cfg.base, cfg.tuned), "pivot_cuts": cfg.pivot_cuts,
            "flag_shares": cfg.flag_shares}


def run_detection(layout: Layout, cfg: DecisiveParams) -> dict[str, pa.Table]:
    """The population frame (sql/decisive/int_decisive_frame), every signal's detection with
    intervals (`rlvr.decisive.estimates`) and the role shares (agg_decisive_roles); writes the
    results and the plot CSV."""
    con = connect(layout.root)
    for needed, stage in (("decisiveness", "decisive"), ("tokens", "score")):
        if needed not in views(con):
            raise ValueError(f"no complete `{needed}` table under {layout.root}; run the "
                             f"{stage} stage first (`dvc repro {stage}`)")
    params = decisive_sql_params(cfg)
    frame = run_sql(con, "int_decisive_frame", params).to_pandas()
    found = detection(frame, cfg.pivot_cuts, cfg.flag_shares, cfg.n_bootstrap, cfg.alpha,
                      cfg.seed)
    results = {"agg_decisive_detection": pa.Table.from_pandas(found, preserve_index=False),
               "agg_decisive_roles": run_sql(con, "agg_decisive_roles", params)}
    for name, table in results.items():
        write_table(table, layout.decisive_dir / f"{name}.parquet")
    write_table(results["agg_decisive_detection"], layout.plot("decisive_detection"))
    return results


def headline(results: dict[str, pa.Table], runs: list[dict], cfg: DecisiveParams) -> dict:
    """Share pivotal and precision/recall/AUC (with intervals) at the middle cut and share,
    role shares, and the cost."""
    cut, share = cfg.stop_cut, sorted(cfg.flag_shares)[len(cfg.flag_shares) // 2]
    out: dict[str, dict] = {}
    for r in results["agg_decisive_detection"].to_pylist():
        if math.isclose(r["pivot_cut"], cut) and math.isclose(r["flag_share"], share):
            g = out.setdefault(r["generator"], {"pivot_cut": cut, "flag_share": share})
            g.update(n_positions=r["n_positions"], n_measured=r["n_measured"],
                     share_pivotal=_round(r["base_rate"]),
                     share_pivotal_low=_round(r["base_rate_low"]),
                     share_pivotal_high=_round(r["base_rate_high"]))
            for key in ("precision", "recall", "auc", "auc_low", "auc_high"):
                g[f"{r['signal']}_{key}"] = _round(r[key])
    for r in results["agg_decisive_roles"].to_pylist():
        if math.isclose(r["pivot_cut"], cut):
            out.setdefault(r["generator"], {}).setdefault("share_pivotal_by_role", {})[
                r["role"]] = _round(r["share_pivotal"])
    return {"pair": pair_name(cfg.base, cfg.tuned), "design": cfg.design, "generators": out,
            "cost": [{k: v for k, v in run.items() if k != "path"} for run in runs]}


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def gate_run(layout: Layout, run: dict, cfg: DecisiveParams) -> dict:
    """Gate one generator's part file (`rlvr.store.experiment_gates.check_decisiveness`): its
    rows are every position of the responses `select_items` picks, and agree with them."""
    source = SAMPLES.read(layout, model=run["model"])
    expected = pd.DataFrame(  # every position of each measured response: the population
        [(m.key.split("/")[1], int(m.key.split("/")[2]), t)
         for m in select_items(source, cfg) for t in range(len(m.response_ids))],
        columns=["prompt_id", "sample_id", "position"])
    return check_decisiveness(
        read_files([run["path"]]), source.to_pandas(), expected, cfg.rollouts,
        cfg.max_rollouts, f"decisiveness_{run['model']}",
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

