"""The cross-sampling sweep: cells at matched budgets, per-cell tables, publishing.

One *cell* is (direction, rule, target budget, calibration round, seed). Running a cell
cross-samples `samples_per_prompt` responses for every prompt with
`rlvr.cross.decoder.cross_sample`, grades them, and writes one part file to each work table
(fingerprinted, so a rerun keeps finished cells):

    <cross>/cells/samples/part-<cell>.parquet   one row per response
    <cross>/cells/tokens/part-<cell>.parquet    one row per response token

`publish_cross` links the final cells (the endpoints and the last calibration round of each
(direction, rule, budget)) into `<cross>/samples` and `<cross>/tokens`, the views `cross_samples`
and `cross_tokens`; `rlvr.cross.calibration` picks the thresholds.

`cross_samples`: direction, pair (`<base>__<tuned>`), primary_model, intervention_model, rule,
target_budget, calibration_round, threshold (a rate for random; the mean rate when matched per
response), matched_rule (random matched per response: the rule whose shares it copies), seed,
prompt_id, sample_id, prompt, answer, prompt_token_ids, response_token_ids, response_text,
n_tokens (EOS included), n_switched, switch_share (= n_switched / n_tokens, the budget of one
response), finish_reason, reward, temperature, top_p, max_new_tokens.
`cross_tokens`: direction, pair, rule, target_budget, threshold, seed, prompt_id, sample_id,
position, token_id, token_text, is_switched, source_model, js, entropy_primary,
entropy_intervention, logprob_primary, logprob_intervention, delta_top (see
`rlvr.cross.decoder.CrossGeneration`).

Directions: forward = (primary base, intervention tuned), backward = (primary tuned,
intervention base). Rules: `js`; `entropy`, the BASE model's entropy in both directions (backward
it is the intervention model's); `entropy_primary`, the primary's entropy (backward: the tuned
model's); `delta`; `random`. The endpoints `none` (budget 0: the primary alone) and `all`
(budget 1: the intervention model alone) bound every rule's curve. A budget is the mean over
responses of switched / generated tokens, everywhere: calibration, curves and metrics.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.config import require
from rlvr.cross.decoder import CrossGeneration, SwitchRule, cross_sample
from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import Grader, sample_keys
from rlvr.layout import Layout
from rlvr.models.checks import check_model, check_pair, fit_prompts
from rlvr.models.loading import load_spec, pin_torch_threads
from rlvr.models.specs import ModelsParams, ModelSpec
from rlvr.store.experiment_gates import check_cross_samples, check_cross_tokens
from rlvr.store.gates import read_files
from rlvr.store.hashing import fingerprint
from rlvr.store.tables import (
    clear_complete,
    finalize_dataset,
    pair_name,
    part_is_current,
    to_table,
    write_part,
)
from rlvr.testbed.graders import get_grader
from rlvr.testbed.prompts import PromptRecord, encode_prompts, load_prompts, prompt_origin

DIRECTIONS = ("forward", "backward")
RULES = ("js", "entropy", "entropy_primary", "delta", "random")  # calibrated to each budget
ENDPOINTS = {"none": 0.0, "all": 1.0}  # rule -> its budget: the primary alone, the other alone
TABLES = ("samples", "tokens")

CROSS_SAMPLES_SCHEMA = pa.schema([
    pa.field("direction", pa.string(), nullable=False),
    pa.field("pair", pa.string(), nullable=False),
    pa.field("primary_model", pa.string(), nullable=False),
    pa.field("intervention_model", pa.string(), nullable=False),
    pa.field("rule", pa.string(), nullable=False),
    pa.field("target_budget", pa.float64(), nullable=False),
    pa.field("calibration_round", pa.int32(), nullable=False),
    pa.field("threshold", pa.float64(), nullable=False),
    pa.field("matched_rule", pa.string()),
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
    pa.field("target_budget", pa.float64(), nullable=False),
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
class CrossResources:
    """`cross_sample.resources`: speed only (not fingerprinted, not DVC params)."""

    batch_size: int = 256  # rows decoded in lock-step at once
    max_parallel: int = 2  # cells decoded at once (threads), each single-threaded

    def __post_init__(self) -> None:
        for key in ("batch_size", "max_parallel"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")


@dataclass(frozen=True)
class CrossParams:
    """`cross_sample`: cross-sampling at matched budgets over the first `n_prompts` prompts of
    `sample.prompts`, graded by `sample.grader`."""

    base_model: str = "base"  # forward: primary base, intervention tuned; backward: swapped
    tuned_model: str = "rl"
    n_prompts: int = 32  # the first N prompts of `sample.prompts`
    samples_per_prompt: int = 4
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    directions: list[str] = field(default_factory=lambda: ["forward", "backward"])
    # switch rules, each calibrated to every budget; entropy = the base model's entropy
    rules: list[str] = field(default_factory=lambda: ["js", "entropy", "delta", "random"])
    # target budgets: mean over responses of switched / generated tokens
    budgets: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1, 0.2, 0.4])
    # global: random switches every token at the target rate; per_response: each random
    # response switches at the rate its js response (same prompt, sample, seed) reached
    random_match: Literal["global", "per_response"] = "global"
    calibration_rounds: int = 2  # 1: pilot thresholds only; 2: re-pick once where off target
    budget_tolerance: float = 0.15  # on target: |achieved - target| <= tolerance x target
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64  # the steps testbed's responses run to ~60 tokens
    n_bootstrap: int = 1000
    alpha: float = 0.05
    bootstrap_seed: int = 0
    resources: CrossResources = field(default_factory=CrossResources)

    def __post_init__(self) -> None:
        for key in ("n_prompts", "samples_per_prompt", "max_new_tokens", "n_bootstrap",
                    "calibration_rounds"):
            require(getattr(self, key) >= 1, key, "must be >= 1",
                    "use a positive integer")
        require(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds),
                "seeds", f"need distinct seeds, got {self.seeds}", "list e.g. [0, 1]")
        require(bool(self.directions) and set(self.directions) <= {"forward", "backward"},
                "directions", f"got {self.directions}",
                "use a subset of [forward, backward]")
        require(self.base_model != self.tuned_model, "tuned_model",
                "name the same model", "pick two different models")
        unknown = sorted(set(self.rules) - set(RULES))
        require(not unknown, "rules", f"unknown rule(s) {unknown}", f"use names of {RULES}")
        require("random" in self.rules and len(set(self.rules)) == len(self.rules), "rules",
                f"{self.rules} lacks the random control or repeats a rule",
                "list each rule once, random included")
        require(self.random_match == "global" or "js" in self.rules, "random_match",
                "per_response copies the js rule's shares", "add js to rules or use global")
        require(bool(self.budgets) and all(0 < b < 1 for b in self.budgets)
                and len(set(self.budgets)) == len(self.budgets), "budgets",
                f"need distinct shares in (0, 1), got {self.budgets}",
                "use e.g. [0.02, 0.05, 0.1, 0.2, 0.4]")
        require(0 < self.budget_tolerance < 1, "budget_tolerance", "must be in (0, 1)",
                "use e.g. 0.15 (within 15% of the target)")
        require(0 < self.temperature and 0 < self.top_p <= 1, "temperature",
                "need temperature > 0 and top_p in (0, 1]", "use e.g. 1.0 and 1.0")
        require(0 < self.alpha < 1, "alpha", "must be in (0, 1)", "use 0.05")


@dataclass(frozen=True)
class CrossCell:
    """One point of the sweep: a rule at a target budget, for one seed and calibration round."""

    direction: str
    primary: str
    intervention: str
    rule: str
    threshold: float  # the decoder's threshold (a rate for random)
    seed: int
    target_budget: float
    calibration_round: int = 0  # 0 for the endpoints
    matched_rule: str | None = None  # random matched per response: whose shares it copies
    rates: tuple[float, ...] | None = None  # random matched per response: one rate per row

    @property
    def name(self) -> str:
        if self.rule in ENDPOINTS:
            return f"{self.direction}-{self.rule}-s{self.seed}"
        return (f"{self.direction}-{self.rule}-b{100 * self.target_budget:g}"
                f"-r{self.calibration_round}-s{self.seed}")

    @property
    def group(self) -> tuple[str, str, float]:
        """(direction, rule, target budget): the seeds of one curve point."""
        return self.direction, self.rule, self.target_budget

    def switch_rule(self) -> SwitchRule:
        """The decoder rule: base entropy is the primary's forward, the intervention's
        backward; the endpoints are js thresholds no JS value crosses / every value crosses."""
        if self.rule in ENDPOINTS:
            return SwitchRule("js", 1.0 if self.rule == "none" else -1.0)
        if self.rule == "entropy":
            side = "primary" if self.direction == "forward" else "intervention"
            return SwitchRule(f"entropy_{side}", self.threshold)
        return SwitchRule(self.rule, self.threshold)


# decoder signal -> its cross_tokens column (calibration reads the pilot's values)
SIGNAL_COLUMNS = {"js": "js", "entropy_primary": "entropy_primary",
                  "entropy_intervention": "entropy_intervention", "delta": "delta_top"}


def direction_models(direction: str, base: str, tuned: str) -> tuple[str, str]:
    """(primary, intervention) model names of a direction."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use one of {DIRECTIONS}")
    return (base, tuned) if direction == "forward" else (tuned, base)


def endpoint_cells(directions: Sequence[str], base: str, tuned: str,
                   seeds: Sequence[int]) -> list[CrossCell]:
    """The budget-0 and budget-1 cells of every direction and seed; budget 0 is the pilot."""
    cells = []
    for direction in directions:
        primary, intervention = direction_models(direction, base, tuned)
        cells += [CrossCell(direction, primary, intervention, rule, 1.0 if rule == "none"
                            else -1.0, s, budget) for rule, budget in ENDPOINTS.items()
                  for s in seeds]
    return cells


def plan_inputs(
    cfg: CrossParams, models: ModelsParams, prompts: str, drop_unfit: bool, layout: Layout,
) -> tuple[dict[str, ModelSpec], list[PromptRecord], int]:
    """Check every input of the sweep before any output is touched: both models' files, one
    vocabulary and head size, the prompt file and each prompt's fit to both models (all of the
    file, as the sample stage asks). Returns the pair's specs, the first `n_prompts` prompts
    that fit, and how many of the file's were dropped."""
    specs = {n: models.spec(n, layout) for n in (cfg.base_model, cfg.tuned_model)}
    base, tuned = (check_model(specs[n]) for n in (cfg.base_model, cfg.tuned_model))
    check_pair(base, tuned)
    records = load_prompts(prompts, layout)
    kept, dropped = fit_prompts(records, [base, tuned], cfg.max_new_tokens, drop_unfit,
                                prompt_origin(prompts, layout), "sample.unfit_prompts")
    return specs, kept[: cfg.n_prompts], dropped


@functools.lru_cache(maxsize=8)
def _load(spec: ModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    # cells share a few models: load each once per process (load_spec serialises loads)
    return load_spec(spec)


def cell_rows(
    cell: CrossCell, records: Sequence[PromptRecord], n: int, gens: Sequence[CrossGeneration],
    tokenizer: PreTrainedTokenizerBase, params: SamplingParams, pair: str, grader: Grader,
) -> tuple[pa.Table, pa.Table]:
    """The samples and tokens rows of one cell, generations laid out as `sample_keys`."""
    index, _ = sample_keys(records, n)
    eos = tokenizer.eos_token_id
    samples: dict[str, list] = {name: [] for name in CROSS_SAMPLES_SCHEMA.names}
    tokens: dict[str, list] = {name: [] for name in CROSS_TOKENS_SCHEMA.names}
    threshold = cell.threshold if cell.rates is None else sum(cell.rates) / len(cell.rates)
    shared = {"direction": cell.direction, "pair": pair, "rule": cell.rule,
              "target_budget": cell.target_budget, "threshold": threshold, "seed": cell.seed}
    for row, (i, gen) in enumerate(zip(index, gens, strict=True)):
        rec, ids = records[i], gen.response_ids
        body = ids[:-1] if gen.finish_reason == "eos" else ids
        text = tokenizer.decode(body, skip_special_tokens=True)
        n_switched = sum(gen.switched)
        values = {
            **shared, "primary_model": cell.primary, "intervention_model": cell.intervention,
            "calibration_round": cell.calibration_round, "matched_rule": cell.matched_rule,
            "prompt_id": rec.prompt_id, "sample_id": row % n, "prompt": rec.prompt,
            "answer": rec.answer, "prompt_token_ids": gen.prompt_ids,
            "response_token_ids": ids, "response_text": text, "n_tokens": len(ids),
            "n_switched": n_switched, "switch_share": n_switched / len(ids),
            "finish_reason": gen.finish_reason, "reward": grader(text, rec.answer),
            "temperature": params.temperature, "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
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
        tokens["token_text"] += [tokenizer.decode([i]) for i in ids]  # readable, as in `tokens`
        tokens["is_switched"] += gen.switched
        tokens["source_model"] += [cell.intervention if s else cell.primary for s in gen.switched]
        for name in _TOKEN_F32:
            tokens[name] += getattr(gen, name)
    return to_table(samples, CROSS_SAMPLES_SCHEMA), to_table(tokens, CROSS_TOKENS_SCHEMA)


def cell_path(layout: Layout, cell: CrossCell, table: str) -> str:
    """The work-table part file of a cell (`table`: samples or tokens)."""
    return str(layout.cross_cells_dir / table / f"part-{cell.name}.parquet")


def run_cell(
    cell: CrossCell,
    specs: dict[str, ModelSpec],
    records: Sequence[PromptRecord],
    cfg: CrossParams,
    grader: str,
    layout: Layout,
    progress: bool = False,
) -> dict[str, object]:
    """Cross-sample one cell and write its part files (kept if current); returns a summary.

    The primary's tokenizer and chat template format the prompts (as when it samples alone);
    the pair shares one vocabulary (checked). Runs torch single-threaded (`pin_torch_threads`).
    """
    pin_torch_threads()
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cell.seed)
    primary_spec, intervention_spec = specs[cell.primary], specs[cell.intervention]
    samples_path, tokens_path = (cell_path(layout, cell, t) for t in TABLES)
    key = fingerprint(cell=asdict(cell), primary=primary_spec.identity(),
                      intervention=intervention_spec.identity(), n=cfg.samples_per_prompt,
                      params=asdict(params), prompts=[asdict(r) for r in records], grader=grader)
    if not (part_is_current(samples_path, key) and part_is_current(tokens_path, key)):
        primary, tokenizer = _load(primary_spec)
        intervention, _ = _load(intervention_spec)
        prompt_ids = encode_prompts(records, tokenizer, primary_spec.chat_template)
        index, keys = sample_keys(records, cfg.samples_per_prompt)
        pad_id = tokenizer.pad_token_id
        pad_id = tokenizer.eos_token_id if pad_id is None else pad_id
        gens = cross_sample(
            primary, intervention, [prompt_ids[i] for i in index], keys, cell.switch_rule(),
            params, tokenizer.eos_token_id, pad_id, batch_size=cfg.resources.batch_size,
            progress=progress, rates=cell.rates,
        )
        samples, tokens = cell_rows(cell, records, cfg.samples_per_prompt, gens, tokenizer,
                                    params, pair_name(cfg.base_model, cfg.tuned_model),
                                    get_grader(grader))
        for table, path, schema in ((samples, samples_path, CROSS_SAMPLES_SCHEMA),
                                    (tokens, tokens_path, CROSS_TOKENS_SCHEMA)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_part([table], path, schema, key)
    table = pq.read_table(samples_path, columns=["reward", "switch_share"])
    return {"cell": cell.name, "n_responses": table.num_rows,
            "accuracy": pc.mean(table["reward"]).as_py(),
            "budget": pc.mean(table["switch_share"]).as_py()}


def publish_cross(layout: Layout, cells: Sequence[CrossCell]) -> dict[str, int]:
    """Link the final cells' work parts into the `cross_samples` / `cross_tokens` tables, drop
    every other part there, gate both (`rlvr.store.experiment_gates`), and only then mark them
    complete; returns row counts."""
    _load.cache_clear()  # the sweep is over: free its models (the process may run more stages)
    kept = {}
    for table in TABLES:
        directory = layout.cross_dir / table
        directory.mkdir(parents=True, exist_ok=True)
        clear_complete(directory)
        keep = []
        for cell in cells:
            source, target = cell_path(layout, cell, table), directory / f"part-{cell.name}.parquet"
            assert os.path.exists(source), f"cell not written: {source}"
            if not (target.exists() and os.path.samefile(source, target)):
                tmp = target.with_name(f".{target.name}.tmp")
                tmp.unlink(missing_ok=True)
                os.link(source, tmp)  # a hard link: the work part, not a second copy
                os.replace(tmp, target)
            keep.append(target)
        kept[table] = keep
    samples = read_files(kept["samples"])
    quality = layout.quality_dir("cross")
    check_cross_samples(samples, DIRECTIONS, [*RULES, *ENDPOINTS], quality / "samples.json")
    check_cross_tokens(read_files(kept["tokens"]), samples, quality / "tokens.json")
    for table, keep in kept.items():
        finalize_dataset(layout.cross_dir / table, keep)
    return {table: sum(pq.read_metadata(p).num_rows for p in keep)
            for table, keep in kept.items()}
