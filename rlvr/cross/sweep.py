"""The cross-sampling sweep: arms, cells at matched budgets, per-cell parts, publishing.

An *arm* is a way of intervening: a direction and what a switched step draws from.
forward = (primary base, intervention tuned), backward = (primary tuned, intervention base),
extrapolate = (primary tuned; a switched step draws from the blend ∝ exp((1+α) log π_tuned -
α log π_base)); a forward arm with α > 0 draws from the same blend with the base primary (the
companion study's own configuration); `top_k` > 0 replaces the exact draw by the companion's
top-K mixing (`rlvr.cross.mixing`). Arms are named `forward`, `backward`, `extrapolate-a0.1`,
`forward-top50`, ...

One *cell* is (arm, rule, target budget, calibration round, seed). Running a cell cross-samples
`samples_per_prompt` responses for every prompt with `rlvr.cross.decoder.cross_sample`, grades
them, and writes one part file to each work table (fingerprinted, so a rerun keeps finished
cells):

    <cross>/cells/samples/part-<cell>.parquet   one row per response
    <cross>/cells/tokens/part-<cell>.parquet    one row per response token

`publish_cross` links the final cells (the endpoints and the last calibration round of each
(arm, rule, budget)) into `<cross>/samples` and `<cross>/tokens`, the views `cross_samples`
and `cross_tokens` (columns: `rlvr.cross.tables`); `rlvr.cross.calibration` picks the thresholds.

Rules are named in base/tuned terms and mean the same in every arm (`RULE_SIGNALS` maps each to
the decoder's primary/intervention rule): `js`; `entropy`, the BASE model's entropy;
`entropy_primary`, the primary's entropy; `delta`, |Δ| of the primary's top token; `gap_neg` /
`gap_pos`, Δ = log π_tuned(c) - log π_base(c) of the primary's candidate token c below -t / above
t (`gap_neg` is the companion's `neg_logp`); `gap_top_neg` / `gap_top_pos`, the same for the
primary's top token; `kl_base_tuned` = KL(base‖tuned), `kl_tuned_base`; `kl_sym`, their mean;
`kl_sym_topk`, the companion's "js" gate (their mean on the primary's top-K tokens); `early`,
the first positions of every response; `random`. The endpoints `none` (budget 0: the primary
alone) and `all` (budget 1: every step drawn from the arm's switch distribution) bound every
rule's curve. A budget is the mean over responses of switched / generated tokens, everywhere:
calibration, curves and metrics.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import pyarrow.compute as pc
import pyarrow.parquet as pq
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.config import require
from rlvr.cross.decoder import SIGNALS, Mixing, SwitchRule, cross_sample
from rlvr.cross.tables import CROSS_SAMPLES_SCHEMA, CROSS_TOKENS_SCHEMA, cell_rows
from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import sample_keys
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
    write_part,
)
from rlvr.testbed.graders import get_grader
from rlvr.testbed.prompts import PromptRecord, encode_prompts, load_prompts, prompt_origin

DIRECTIONS = ("forward", "backward", "extrapolate")
# rule -> the decoder rule when the base model is primary (forward), and when the tuned one is
RULE_SIGNALS = {
    "js": ("js", "js"),
    "entropy": ("entropy_primary", "entropy_intervention"),
    "entropy_primary": ("entropy_primary", "entropy_primary"),
    "delta": ("delta", "delta"),
    # the decoder's gap is log π_int - log π_prim: forward that is Δ, with the tuned primary -Δ
    "gap_neg": ("gap_sampled_neg", "gap_sampled_pos"),
    "gap_pos": ("gap_sampled_pos", "gap_sampled_neg"),
    "gap_top_neg": ("gap_top_neg", "gap_top_pos"),
    "gap_top_pos": ("gap_top_pos", "gap_top_neg"),
    "kl_base_tuned": ("kl_pi", "kl_ip"),
    "kl_tuned_base": ("kl_ip", "kl_pi"),
    "kl_sym": ("kl_sym", "kl_sym"),
    "kl_sym_topk": ("kl_sym_topk", "kl_sym_topk"),
    "early": ("early", "early"),
    "random": ("random", "random"),
}
RULES = tuple(RULE_SIGNALS)  # calibrated to each budget
ENDPOINTS = {"none": 0.0, "all": 1.0}  # rule -> its budget: the primary alone, the other alone
TABLES = ("samples", "tokens")


def arm_name(direction: str, alpha: float = 0.0, top_k: int = 0) -> str:
    """`forward`, `extrapolate-a0.1`, `forward-top50`, ...: the arm's key in tables and metrics."""
    return direction + (f"-a{alpha:g}" if alpha else "") + (f"-top{top_k}" if top_k else "")


def budget_key(target: float) -> str:
    """The metrics key of a target budget, e.g. 0.05 -> "0.05"."""
    return f"{target:g}"


def _check_grid(rules: Sequence[str], budgets: Sequence[float]) -> None:
    unknown = sorted(set(rules) - set(RULES))
    require(not unknown, "rules", f"unknown rule(s) {unknown}", f"use names of {RULES}")
    require(len(set(rules)) == len(rules), "rules", f"{list(rules)} repeats a rule",
            "list each rule once")
    require(bool(budgets) and all(0 < b < 1 for b in budgets)
            and len(set(budgets)) == len(budgets), "budgets",
            f"need distinct shares in (0, 1), got {list(budgets)}",
            "use e.g. [0.02, 0.05, 0.1, 0.2, 0.4]")


@dataclass(frozen=True)
class ArmParams:
    """`cross_sample.arms[i]`: more cells beyond `directions` x `rules` x `budgets` (merged into
    an arm those already make): new gates, extrapolation, the companion's top-K shortcut."""

    direction: str = "forward"  # forward | backward | extrapolate (primary tuned)
    alpha: float = 0.0  # > 0: switched steps draw ∝ exp((1+α) log π_tuned - α log π_base)
    top_k: int = 0  # > 0: the companion's top-K mixing instead of the exact draw
    rules: list[str] = field(default_factory=lambda: ["js", "random"])
    budgets: list[float] = field(default_factory=lambda: [0.05, 0.2])

    def __post_init__(self) -> None:
        require(self.direction in DIRECTIONS, "direction", f"got {self.direction!r}",
                f"use one of {list(DIRECTIONS)}")
        require(self.alpha >= 0 and (self.alpha == 0 or self.direction != "backward"), "alpha",
                f"{self.alpha} with direction {self.direction}",
                "use alpha >= 0, and only with forward or extrapolate")
        require(self.direction != "extrapolate" or self.alpha > 0, "alpha",
                "extrapolate needs alpha > 0 (0 is the tuned model alone)", "use e.g. 0.1")
        require(self.top_k >= 0, "top_k", f"got {self.top_k}", "use 0 (exact) or e.g. 50")
        _check_grid(self.rules, self.budgets)

    @property
    def name(self) -> str:
        return arm_name(self.direction, self.alpha, self.top_k)


@dataclass(frozen=True)
class CrossResources:
    """`cross_sample.resources`: speed only (not fingerprinted, not DVC params)."""

    batch_size: int = 256  # rows decoded in lock-step at once
    max_parallel: int = 2  # cells decoded at once (threads), each single-threaded

    def __post_init__(self) -> None:
        for key in ("batch_size", "max_parallel"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")


# the toy default's extra arms, sized for its 20-minute budget: the new gates forward (the
# companion's and RRTokenIntervention's claims) and at 10% backward, extrapolation with the
# tuned model primary, the companion's own set-up (base primary, blend at gap_neg positions),
# and its shortcuts (top-50 mixing with JS, and with its own gate)
_GATES = ["gap_neg", "gap_pos", "kl_base_tuned", "kl_tuned_base", "early"]


def _default_arms() -> list[ArmParams]:
    return [
        ArmParams("forward", rules=_GATES, budgets=[0.02, 0.05, 0.1]),
        ArmParams("backward", rules=_GATES, budgets=[0.1]),
        ArmParams("extrapolate", alpha=0.1, rules=["gap_neg", "js", "random"], budgets=[0.1]),
        ArmParams("forward", alpha=0.1, rules=["gap_neg"], budgets=[0.05]),
        ArmParams("forward", top_k=50, rules=["js", "kl_sym_topk"], budgets=[0.05]),
    ]


@dataclass(frozen=True)
class Arm:
    """One arm of the sweep and its (rule, target budget) points, in order."""

    direction: str
    alpha: float
    top_k: int
    points: tuple[tuple[str, float], ...]

    @property
    def name(self) -> str:
        return arm_name(self.direction, self.alpha, self.top_k)


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
    # more (arm, rule, budget) cells: new gates, extrapolation, the companion's shortcuts
    arms: list[ArmParams] = field(default_factory=_default_arms)
    gate_k: int = 50  # K of the companion's top-K gate (kl_sym_topk), as its top-50 log-probs
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
                    "calibration_rounds", "gate_k"):
            require(getattr(self, key) >= 1, key, "must be >= 1",
                    "use a positive integer")
        require(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds),
                "seeds", f"need distinct seeds, got {self.seeds}", "list e.g. [0, 1]")
        require(set(self.directions) <= {"forward", "backward"}, "directions",
                f"got {self.directions}",
                "use a subset of [forward, backward] (extrapolation: `arms`)")
        require(bool(self.directions) or bool(self.arms), "directions",
                "is empty and so is `arms`", "list e.g. [forward, backward]")
        require(self.base_model != self.tuned_model, "tuned_model",
                "name the same model", "pick two different models")
        _check_grid(self.rules, self.budgets)
        require("random" in self.rules, "rules", f"{self.rules} lacks the random control",
                "add random")
        require(self.random_match == "global" or "js" in self.rules, "random_match",
                "per_response copies the js rule's shares", "add js to rules or use global")
        require(0 < self.budget_tolerance < 1, "budget_tolerance", "must be in (0, 1)",
                "use e.g. 0.15 (within 15% of the target)")
        require(0 < self.temperature and 0 < self.top_p <= 1, "temperature",
                "need temperature > 0 and top_p in (0, 1]", "use e.g. 1.0 and 1.0")
        require(0 < self.alpha < 1, "alpha", "must be in (0, 1)", "use 0.05")

    def grid(self) -> list[Arm]:
        """Every arm with its (rule, budget) points: `directions` x `rules` x `budgets`, then
        `arms` (an arm listed twice gets the union of its points)."""
        points: dict[tuple[str, float, int], dict[tuple[str, float], None]] = {}
        for direction in self.directions:
            points[(direction, 0.0, 0)] = {(r, b): None for r in self.rules for b in self.budgets}
        for arm in self.arms:
            points.setdefault((arm.direction, arm.alpha, arm.top_k), {}).update(
                {(r, b): None for r in arm.rules for b in arm.budgets})
        return [Arm(d, a, k, tuple(p)) for (d, a, k), p in points.items()]


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
    alpha: float = 0.0  # > 0: the switch distribution is the extrapolation blend
    top_k: int = 0  # > 0: the companion's top-K mixing

    @property
    def arm(self) -> str:
        return arm_name(self.direction, self.alpha, self.top_k)

    @property
    def name(self) -> str:
        if self.rule in ENDPOINTS:
            return f"{self.arm}-{self.rule}-s{self.seed}"
        return (f"{self.arm}-{self.rule}-b{100 * self.target_budget:g}"
                f"-r{self.calibration_round}-s{self.seed}")

    @property
    def group(self) -> tuple[str, str, float]:
        """(arm, rule, target budget): the seeds of one curve point."""
        return self.arm, self.rule, self.target_budget

    def switch_rule(self) -> SwitchRule:
        """The decoder rule (`RULE_SIGNALS`: which side is the base model depends on the
        direction); the endpoints are js thresholds no JS value crosses / every value crosses."""
        if self.rule in ENDPOINTS:
            return SwitchRule("js", 1.0 if self.rule == "none" else -1.0)
        return SwitchRule(RULE_SIGNALS[self.rule][self.direction != "forward"], self.threshold)

    def mixing(self, gate_k: int = 50) -> Mixing:
        """The switch distribution: the intervention model, or the blend (forward: the tuned
        model intervenes with weight 1 + α; extrapolate: the base with weight -α)."""
        weight = {"forward": 1.0 + self.alpha, "backward": 1.0,
                  "extrapolate": -self.alpha}[self.direction]
        return Mixing(weight, self.top_k, gate_k)


def signal_column(cell: CrossCell) -> tuple[str, int]:
    """The cross_tokens column a cell's rule thresholds, and the sign it is read with."""
    return SIGNALS[cell.switch_rule().name]


def direction_models(direction: str, base: str, tuned: str) -> tuple[str, str]:
    """(primary, intervention) model names of a direction."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use one of {DIRECTIONS}")
    return (base, tuned) if direction == "forward" else (tuned, base)


def arm_cell(arm: Arm, base: str, tuned: str, rule: str, threshold: float, seed: int,
             target: float, round_: int = 0) -> CrossCell:
    """A cell of `arm`."""
    primary, intervention = direction_models(arm.direction, base, tuned)
    return CrossCell(arm.direction, primary, intervention, rule, threshold, seed, target,
                     round_, alpha=arm.alpha, top_k=arm.top_k)


def endpoint_cells(arms: Sequence[Arm], base: str, tuned: str,
                   seeds: Sequence[int]) -> list[CrossCell]:
    """The budget-0 and budget-1 cells of every arm and seed; budget 0 is the arm's pilot."""
    return [arm_cell(arm, base, tuned, rule, 1.0 if rule == "none" else -1.0, s, budget)
            for arm in arms for rule, budget in ENDPOINTS.items() for s in seeds]


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
    mixing = cell.mixing(cfg.gate_k)
    key = fingerprint(cell=asdict(cell), primary=primary_spec.identity(),
                      intervention=intervention_spec.identity(), n=cfg.samples_per_prompt,
                      params=asdict(params), prompts=[asdict(r) for r in records], grader=grader,
                      mixing=asdict(mixing))
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
            progress=progress, rates=cell.rates, mixing=mixing,
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
