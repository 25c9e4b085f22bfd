"""The cross-sampling budget sweep: grid cells, per-cell tables, matched random rates, curves.

One *cell* is (direction, rule, threshold, seed). Running a cell cross-samples
`samples_per_prompt` responses for every prompt with `rlvr.cross.decoder.cross_sample`, grades them,
and writes one part file to each table (fingerprinted, so a rerun keeps finished cells):

    <out>/samples/part-<cell>.parquet   one row per response  (view `cross_samples`)
    <out>/tokens/part-<cell>.parquet    one row per response token (view `cross_tokens`)

`cross_samples`: direction, pair (`<base>__<tuned>`), primary_model, intervention_model, rule,
threshold, matched_threshold (random rule: the js threshold whose budget it copies), seed,
prompt_id, sample_id, prompt, answer, prompt_token_ids, response_token_ids, response_text,
n_tokens (EOS included), n_switched, switch_share (= n_switched / n_tokens), finish_reason,
reward, temperature, top_p, max_new_tokens.
`cross_tokens`: direction, pair, rule, threshold, seed, prompt_id, sample_id, position, token_id,
token_text, is_switched, source_model, js, entropy_primary, entropy_intervention,
logprob_primary, logprob_intervention, delta_top (see `rlvr.cross.decoder.CrossGeneration`).

Directions: forward = (primary base, intervention tuned), backward = (primary tuned,
intervention base). The random rule is matched *globally*: for each direction and js threshold,
its rate is the token-pooled share of switched tokens over every js response of that threshold
(all prompts, samples and seeds); each token then switches independently with that probability,
so by Wald's identity the expected pooled share of a random run equals the js run's.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.cross.decoder import CrossGeneration, SwitchRule, cross_sample
from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import sample_keys
from rlvr.models.loading import load_model
from rlvr.store.atomic import atomic_file, write_json
from rlvr.store.tables import (
    clear_complete,
    finalize_dataset,
    fingerprint,
    part_is_current,
    to_table,
    write_part,
)
from rlvr.testbed.digits import grade
from rlvr.testbed.prompts import PromptRecord, encode_prompts
from rlvr.warehouse.sql import run_sql
from rlvr.warehouse.views import complete_files, view_sql

DIRECTIONS = ("forward", "backward")

CROSS_SAMPLES_SCHEMA = pa.schema([
    pa.field("direction", pa.string(), nullable=False),
    pa.field("pair", pa.string(), nullable=False),
    pa.field("primary_model", pa.string(), nullable=False),
    pa.field("intervention_model", pa.string(), nullable=False),
    pa.field("rule", pa.string(), nullable=False),
    pa.field("threshold", pa.float64(), nullable=False),
    pa.field("matched_threshold", pa.float64()),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("sample_id", pa.int32(), nullable=False),
    pa.field("prompt", pa.string()),
    pa.field("answer", pa.string()),
    pa.field("prompt_token_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("response_token_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("response_text", pa.string(), nullable=False),
    pa.field("n_tokens", pa.int32(), nullable=False),
    pa.field("n_switched", pa.int32(), nullable=False),
    pa.field("switch_share", pa.float64(), nullable=False),
    pa.field("finish_reason", pa.string(), nullable=False),
    pa.field("reward", pa.int8(), nullable=False),
    pa.field("temperature", pa.float32(), nullable=False),
    pa.field("top_p", pa.float32(), nullable=False),
    pa.field("max_new_tokens", pa.int32(), nullable=False),
])

_TOKEN_F32 = ("js", "entropy_primary", "entropy_intervention", "logprob_primary",
              "logprob_intervention", "delta_top")
CROSS_TOKENS_SCHEMA = pa.schema([
    pa.field("direction", pa.string(), nullable=False),
    pa.field("pair", pa.string(), nullable=False),
    pa.field("rule", pa.string(), nullable=False),
    pa.field("threshold", pa.float64(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("sample_id", pa.int32(), nullable=False),
    pa.field("position", pa.int32(), nullable=False),
    pa.field("token_id", pa.int32(), nullable=False),
    pa.field("token_text", pa.string(), nullable=False),
    pa.field("is_switched", pa.bool_(), nullable=False),
    pa.field("source_model", pa.string(), nullable=False),
    *[pa.field(name, pa.float32(), nullable=False) for name in _TOKEN_F32],
])


@dataclass(frozen=True)
class CrossCell:
    """One grid point of the sweep."""

    direction: str
    primary: str
    intervention: str
    rule: str
    threshold: float
    seed: int
    matched_threshold: float | None = None  # random rule: the js threshold it is matched to

    @property
    def name(self) -> str:
        return f"{self.direction}-{self.rule}-{self.threshold:.6g}-s{self.seed}"


def direction_models(direction: str, base: str, tuned: str) -> tuple[str, str]:
    """(primary, intervention) model names of a direction."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use one of {DIRECTIONS}")
    return (base, tuned) if direction == "forward" else (tuned, base)


def grid_cells(
    directions: Sequence[str], base: str, tuned: str, rules: dict[str, Sequence[float]],
    seeds: Sequence[int],
) -> list[CrossCell]:
    """Every (direction, rule, threshold, seed) cell of fixed thresholds, in a stable order."""
    cells = []
    for direction in directions:
        primary, intervention = direction_models(direction, base, tuned)
        for rule, thresholds in rules.items():
            for threshold in thresholds:
                SwitchRule(rule, float(threshold))  # validate early, before any decoding
                cells += [CrossCell(direction, primary, intervention, rule, float(threshold), s)
                          for s in seeds]
    return cells


_LOAD_LOCK = threading.Lock()


def _load(path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    # cells share a few models: load each once per process; one loader at a time, because
    # transformers' loading uses process-global init contexts that concurrent loads corrupt
    with _LOAD_LOCK:
        return _load_cached(path)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return load_model(path, made_by="rl")


def cell_rows(
    cell: CrossCell, records: Sequence[PromptRecord], n: int, gens: Sequence[CrossGeneration],
    tokenizer: PreTrainedTokenizerBase, params: SamplingParams, pair: str,
) -> tuple[pa.Table, pa.Table]:
    """The samples and tokens rows of one cell, generations laid out as `sample_keys`."""
    index, _ = sample_keys(records, n)
    eos = tokenizer.eos_token_id
    samples: dict[str, list] = {name: [] for name in CROSS_SAMPLES_SCHEMA.names}
    tokens: dict[str, list] = {name: [] for name in CROSS_TOKENS_SCHEMA.names}
    shared = {"direction": cell.direction, "pair": pair, "rule": cell.rule,
              "threshold": cell.threshold, "seed": cell.seed}
    for row, (i, gen) in enumerate(zip(index, gens, strict=True)):
        rec, ids = records[i], gen.response_ids
        body = ids[:-1] if gen.finish_reason == "eos" else ids
        text = tokenizer.decode(body, skip_special_tokens=True)
        n_switched = sum(gen.switched)
        values = {
            **shared, "primary_model": cell.primary, "intervention_model": cell.intervention,
            "matched_threshold": cell.matched_threshold, "prompt_id": rec.prompt_id,
            "sample_id": row % n, "prompt": rec.prompt, "answer": rec.answer,
            "prompt_token_ids": gen.prompt_ids, "response_token_ids": ids,
            "response_text": text, "n_tokens": len(ids), "n_switched": n_switched,
            "switch_share": n_switched / len(ids), "finish_reason": gen.finish_reason,
            "reward": grade(text, rec.answer), "temperature": params.temperature,
            "top_p": params.top_p, "max_new_tokens": params.max_new_tokens,
        }
        assert ids[-1:] != [eos] or gen.finish_reason == "eos"
        for key, value in values.items():
            samples[key].append(value)
        k = len(ids)
        for key, value in shared.items():
            tokens[key] += [value] * k
        tokens["prompt_id"] += [rec.prompt_id] * k
        tokens["sample_id"] += [row % n] * k
        tokens["position"] += list(range(k))
        tokens["token_id"] += ids
        tokens["token_text"] += tokenizer.convert_ids_to_tokens(ids)
        tokens["is_switched"] += gen.switched
        tokens["source_model"] += [cell.intervention if s else cell.primary for s in gen.switched]
        for name in _TOKEN_F32:
            tokens[name] += getattr(gen, name)
    return to_table(samples, CROSS_SAMPLES_SCHEMA), to_table(tokens, CROSS_TOKENS_SCHEMA)


def run_cell(
    cell: CrossCell,
    models_dir: str | Path,
    records: Sequence[PromptRecord],
    samples_per_prompt: int,
    params: SamplingParams,
    out_dir: str | Path,
    pair: str,
    batch_size: int = 256,
    threads: int | None = None,
) -> dict[str, object]:
    """Cross-sample one cell and write its part files (kept if current); returns a summary.

    `params.seed` is ignored: the cell's seed is used. `threads` sets torch's (process-wide)
    intra-op thread count; tiny models decode fastest with 1 and cells run in parallel instead.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    params = SamplingParams(params.temperature, params.top_p, params.max_new_tokens, cell.seed)
    name = f"part-{cell.name}.parquet"
    samples_path = Path(out_dir) / "samples" / name
    tokens_path = Path(out_dir) / "tokens" / name
    key = fingerprint(cell=asdict(cell), models_dir=str(models_dir), n=samples_per_prompt,
                      params=asdict(params), prompts=[asdict(r) for r in records])
    if not (part_is_current(samples_path, key) and part_is_current(tokens_path, key)):
        primary, tokenizer = _load(str(Path(models_dir) / cell.primary))
        intervention, _ = _load(str(Path(models_dir) / cell.intervention))
        prompt_ids = encode_prompts(records, tokenizer)
        index, keys = sample_keys(records, samples_per_prompt)
        gens = cross_sample(
            primary, intervention, [prompt_ids[i] for i in index], keys,
            SwitchRule(cell.rule, cell.threshold), params, tokenizer.eos_token_id,
            tokenizer.pad_token_id, batch_size=batch_size,
        )
        samples, tokens = cell_rows(cell, records, samples_per_prompt, gens, tokenizer, params,
                                    pair)
        for table, path, schema in ((samples, samples_path, CROSS_SAMPLES_SCHEMA),
                                    (tokens, tokens_path, CROSS_TOKENS_SCHEMA)):
            path.parent.mkdir(parents=True, exist_ok=True)
            clear_complete(path.parent)  # the table is being modified until publish_cross
            write_part([table], path, schema, key)
    table = pq.read_table(samples_path, columns=["reward", "n_tokens", "n_switched"])
    n_tokens = pc.sum(table["n_tokens"]).as_py()
    return {"cell": cell.name, "n_responses": table.num_rows,
            "accuracy": pc.mean(table["reward"]).as_py(),
            "switch_share_pooled": pc.sum(table["n_switched"]).as_py() / n_tokens}


def matched_random_cells(out_dir: str | Path, js_cells: Sequence[CrossCell]) -> list[CrossCell]:
    """Random-rule cells whose rate is the pooled switch share of each js threshold.

    Thresholds whose js runs switched nothing or everything are skipped (those endpoints are the
    single-model baselines, already in the grid).
    """
    totals: dict[tuple[str, float], list[int]] = {}
    for cell in js_cells:
        assert cell.rule == "js", "match random rates to js cells only"
        t = pq.read_table(Path(out_dir) / "samples" / f"part-{cell.name}.parquet",
                          columns=["n_tokens", "n_switched"])
        acc = totals.setdefault((cell.direction, cell.threshold), [0, 0])
        acc[0] += pc.sum(t["n_switched"]).as_py()
        acc[1] += pc.sum(t["n_tokens"]).as_py()
    cells = []
    seen: set[tuple[str, float]] = set()
    for cell in js_cells:
        switched, total = totals[(cell.direction, cell.threshold)]
        rate = switched / total
        if 0 < switched < total and (cell.direction, cell.threshold, cell.seed) not in seen:
            seen.add((cell.direction, cell.threshold, cell.seed))
            cells.append(CrossCell(cell.direction, cell.primary, cell.intervention, "random",
                                   rate, cell.seed, matched_threshold=cell.threshold))
    return cells


def publish_cross(out_dir: str | Path, cells: Sequence[CrossCell]) -> dict[str, int]:
    """Drop part files of cells no longer in the grid and mark both tables complete."""
    counts = {}
    for table in ("samples", "tokens"):
        directory = Path(out_dir) / table
        keep = [directory / f"part-{c.name}.parquet" for c in cells]
        missing = [p for p in keep if not p.exists()]
        assert not missing, f"cells not written: {missing[:3]}"
        finalize_dataset(directory, keep)
        counts[table] = sum(pq.read_metadata(p).num_rows for p in keep)
    return counts


def half_gain_budget(points: Sequence[tuple[float, float]], target: float, rising: bool
                     ) -> float | None:
    """Smallest budget where the curve first reaches `target`, by linear interpolation.

    points: (budget, accuracy) sorted by budget, endpoints included. `rising`: forward (accuracy
    must reach at least target) or backward (must fall to at most target). None if never.
    """
    def reached(acc: float) -> bool:
        return acc >= target if rising else acc <= target

    for (b0, a0), (b1, a1) in zip(points, points[1:], strict=False):
        if reached(a0):
            return b0
        if reached(a1):
            return b0 + (b1 - b0) * (target - a0) / (a1 - a0)
    return points[-1][0] if points and reached(points[-1][1]) else None


def budget_metrics(curve: Sequence[dict]) -> dict[str, object]:
    """DVC metrics from the accuracy-by-budget rows (`agg_cross_accuracy_by_budget`).

    Per direction: the primary-alone and intervention-alone accuracies (cells with budget 0 and
    1), and per rule the budget share and token count at which forward reaches half of the RL
    gain (backward: loses half), interpolated along the rule's curve.
    """
    out: dict[str, object] = {}
    for direction in DIRECTIONS:
        rows = [r for r in curve if r["direction"] == direction]
        if not rows:
            continue
        start = [r["accuracy"] for r in rows if r["budget_share"] == 0.0]
        end = [r["accuracy"] for r in rows if r["budget_share"] == 1.0]
        if not start or not end:
            raise ValueError(f"cross_sample: direction {direction} lacks a budget-0 or budget-1 "
                             "cell; keep a js threshold >= 0.7 and one < 0 in params.yaml")
        acc0, acc1 = start[0], end[0]
        target = acc0 + 0.5 * (acc1 - acc0)
        entry: dict[str, object] = {"accuracy_primary": acc0, "accuracy_intervention": acc1,
                                    "half_target": target}
        out[direction] = entry
        if acc1 == acc0:  # no gain to recover or lose: no half-way budget
            continue
        for rule in sorted({r["rule"] for r in rows}):
            pts = sorted({(r["budget_share"], r["accuracy"], r["budget_tokens"]) for r in rows
                          if r["rule"] == rule or r["budget_share"] in (0.0, 1.0)})
            share = half_gain_budget([(b, a) for b, a, _ in pts], target, rising=acc1 >= acc0)
            tokens = None
            if share is not None:  # tokens at that share, interpolated the same way
                tokens = _interp([(b, t) for b, _, t in pts], share)
            entry[rule] = {"half_gain_budget_share": share, "half_gain_budget_tokens": tokens}
    return out


def _interp(points: Sequence[tuple[float, float]], x: float) -> float:
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return math.nan


def accuracy_by_budget(
    cross_dir: str | Path, n_bootstrap: int, alpha: float, bootstrap_seed: int
) -> pa.Table:
    """Run `sql/agg_cross_accuracy_by_budget.sql` over the finished `cross_samples` table."""
    files = complete_files(Path(cross_dir) / "samples")
    if not files:
        raise FileNotFoundError(f"no finished cross_samples under {cross_dir}/samples; run the "
                                "cross_sample stage first")
    con = duckdb.connect()
    con.sql(view_sql("cross_samples", files))
    return run_sql(con, "agg_cross_accuracy_by_budget", {
        "n_bootstrap": n_bootstrap, "alpha": alpha, "bootstrap_seed": bootstrap_seed})


def write_budget_outputs(
    cross_dir: str | Path, plot_csv: str | Path, metrics_json: str | Path, n_bootstrap: int,
    alpha: float, bootstrap_seed: int,
) -> dict[str, object]:
    """Write the accuracy-by-budget plot CSV and the metrics JSON; returns the metrics."""
    curve = accuracy_by_budget(cross_dir, n_bootstrap, alpha, bootstrap_seed)
    with atomic_file(plot_csv) as tmp:
        pa_csv.write_csv(curve, tmp)
    metrics = budget_metrics(curve.to_pylist())
    write_json(metrics, metrics_json)
    return metrics
