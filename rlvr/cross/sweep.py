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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

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
class CrossResources:
    """`cross_sample.resources`: speed only (not fingerprinted, not DVC params)."""

    batch_size: int = 256  # rows decoded in lock-step at once
    max_parallel: int = 2  # cells decoded at once (threads), each single-threaded

    def __post_init__(self) -> None:
        for key in ("batch_size", "max_parallel"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")


@dataclass(frozen=True)
class CrossParams:
    """`cross_sample`: the budgeted cross-sampling sweep over the first `n_prompts` prompts of
    `sample.prompts`, graded by `sample.grader`."""

    base_model: str = "base"  # forward: primary base, intervention tuned; backward: swapped
    tuned_model: str = "rl"
    n_prompts: int = 32  # the first N prompts of `sample.prompts`
    samples_per_prompt: int = 4
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    directions: list[str] = field(default_factory=lambda: ["forward", "backward"])
    # thresholds per rule; js >= ln 2 never switches and js < 0 always does (the baselines)
    rules: dict[str, list[float]] = field(default_factory=lambda: {
        "js": [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, -1.0], "entropy": [1.0, 0.3, 0.1],
        "delta": [2.0, 1.0, 0.3]})
    match_random: bool = True  # add random-rule cells at each js threshold's pooled budget
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64  # the steps testbed's responses run to ~60 tokens
    n_bootstrap: int = 1000
    alpha: float = 0.05
    bootstrap_seed: int = 0
    resources: CrossResources = field(default_factory=CrossResources)

    def __post_init__(self) -> None:
        for key in ("n_prompts", "samples_per_prompt", "max_new_tokens", "n_bootstrap"):
            require(getattr(self, key) >= 1, key, "must be >= 1",
                    "use a positive integer")
        require(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds),
                "seeds", f"need distinct seeds, got {self.seeds}", "list e.g. [0, 1]")
        require(bool(self.directions) and set(self.directions) <= {"forward", "backward"},
                "directions", f"got {self.directions}",
                "use a subset of [forward, backward]")
        require(self.base_model != self.tuned_model, "tuned_model",
                "name the same model", "pick two different models")
        known = {"js", "entropy", "delta", "random"}
        require(isinstance(self.rules, dict) and set(self.rules) <= known, "rules",
                f"unknown rule(s) {sorted(set(self.rules) - known)}",
                f"use keys of {sorted(known)}")
        js = self.rules.get("js", [])
        require(any(t >= 0.6931471805599453 for t in js) and any(t < 0 for t in js),
                "rules.js", "needs the two baselines", "keep 1.0 (never switch) "
                "and -1.0 (always switch) in the js thresholds")
        require(all(0 <= r <= 1 for r in self.rules.get("random", [])),
                "rules.random", "random thresholds are rates", "use values in [0, 1]")
        require(0 < self.temperature and 0 < self.top_p <= 1, "temperature",
                "need temperature > 0 and top_p in (0, 1]", "use e.g. 1.0 and 1.0")
        require(0 < self.alpha < 1, "alpha", "must be in (0, 1)", "use 0.05")


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
            "reward": grader(text, rec.answer), "temperature": params.temperature,
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
    name = f"part-{cell.name}.parquet"
    samples_path = layout.cross_dir / "samples" / name
    tokens_path = layout.cross_dir / "tokens" / name
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
            primary, intervention, [prompt_ids[i] for i in index], keys,
            SwitchRule(cell.rule, cell.threshold), params, tokenizer.eos_token_id, pad_id,
            batch_size=cfg.resources.batch_size, progress=progress,
        )
        samples, tokens = cell_rows(cell, records, cfg.samples_per_prompt, gens, tokenizer,
                                    params, pair_name(cfg.base_model, cfg.tuned_model),
                                    get_grader(grader))
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


def matched_random_cells(layout: Layout, js_cells: Sequence[CrossCell]) -> list[CrossCell]:
    """Random-rule cells whose rate is the pooled switch share of each js threshold.

    Thresholds whose js runs switched nothing or everything are skipped (those endpoints are the
    single-model baselines, already in the grid).
    """
    totals: dict[tuple[str, float], list[int]] = {}
    for cell in js_cells:
        assert cell.rule == "js", "match random rates to js cells only"
        t = pq.read_table(layout.cross_dir / "samples" / f"part-{cell.name}.parquet",
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


def publish_cross(layout: Layout, cells: Sequence[CrossCell]) -> dict[str, int]:
    """Drop part files of cells no longer in the grid and mark both tables complete."""
    _load.cache_clear()  # the sweep is over: free its models (the process may run more stages)
    counts = {}
    for table in ("samples", "tokens"):
        directory = layout.cross_dir / table
        keep = [directory / f"part-{c.name}.parquet" for c in cells]
        missing = [p for p in keep if not p.exists()]
        assert not missing, f"cells not written: {missing[:3]}"
        finalize_dataset(directory, keep)
        counts[table] = sum(pq.read_metadata(p).num_rows for p in keep)
    return counts
