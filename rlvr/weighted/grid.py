"""The divergence-weighted advantage grid: train, evaluate and compare variants over seeds.

A *variant* is a weighting (divergence D, signed α, scale s; `baseline` has none) and a *run* is
one (variant, seed): GRPO/DAPO from the base model with `grpo.train_grpo` and the variant's
weight hook, evaluated on fixed held-out prompts (mean@n accuracy, `evaluation`) at step 0
and every `eval_every` steps. All variants share every other knob (equal compute), and a seed
gives every variant the same first rollout batch, so runs of one seed are paired.

Files (all written atomically; columns are the contract with the report):

- `runs/<variant>/seed_<k>.parquet` (one per run, a `weighted_run@<variant>` DVC output) and
  their union `training.parquet`: one row per (run, step, metric) with columns `variant` str,
  `divergence` str (`none` for the baseline), `alpha` float (signed; 0 for the baseline), `s`
  float (0 for the baseline), `seed` int, `step` int, `metric` str, `value` float. Metrics:
  - at eval steps (0 = the base model unless `eval.at_start` is off, then every `eval.every`
    and the last step):
    `eval_accuracy` (mean@n held-out accuracy, the headline), `eval_accuracy_stderr` (over
    prompts), `eval_pass_at_n`, `eval_share_eq_format`, `eval_mean_length`;
  - at steps 1..steps, the trainer's log on its own rollout batch: `train_reward_mean`,
    `train_accuracy` (= reward), `train_loss`, `train_clip_frac`, `train_dropped_share`,
    `train_entropy`, `train_response_length`, `train_kl_base` (NaN without a reference model),
    `train_seconds`;
  - run totals, stored at the last step: `weight_mean`, `weight_std`, `weight_min`,
    `weight_max` (over every weighted response token), `divergence_mean`, `divergence_p95`
    (weighted variants only) and `run_seconds` (wall time of the run, evals included).
- `results.parquet` / `results.csv`: one row per variant, grid order, baseline first: `variant,
  divergence, alpha, s, n_seeds, step` (last step), `mean, std` (final `eval_accuracy` over
  seeds, std with ddof 1), `diff` (variant mean − baseline mean), `diff_lo, diff_hi, df,
  p_value` (Welch t: 95% interval, unequal variances, seeds treated as independent),
  `paired_ci_low, paired_ci_high, paired_p_value` (paired t over the shared seeds, 95%),
  `paired_sd` (std of the per-seed differences), `paired_mde` (minimal detectable effect of the
  paired test, alpha 0.05, power 0.8, at that sd) and `distinguishable` (the paired interval
  excludes 0; the design is paired). Baseline rows have NaN differences.
- `curves.parquet`: `variant, step, accuracy_mean, accuracy_std, n_seeds` (eval steps);
  `<plots>/weighted_accuracy.csv`: `step, <variant>...` (mean accuracy, DVC plots);
  `<plots>/weighted_final.csv`: `variant, mean, std`; the metrics JSON: `runs`,
  `run_seconds_mean` and per variant `accuracy_mean, accuracy_std` (+ `diff, diff_lo, diff_hi,
  distinguishable`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import pandas as pd
import torch

from rlvr.config import require
from rlvr.generation.sampler import SamplingParams
from rlvr.layout import Layout
from rlvr.models.checks import check_model
from rlvr.models.loading import load_model, load_spec, pin_torch_threads
from rlvr.models.specs import ModelsParams, ModelSpec
from rlvr.store.atomic import atomic_file, sweep_debris
from rlvr.store.experiment_gates import GridShape, check_training
from rlvr.store.registry import WEIGHTED_RUNS
from rlvr.testbed.graders import get_grader
from rlvr.testbed.prompts import PromptRecord, load_prompt_file
from rlvr.training.evaluation import evaluate_model
from rlvr.training.grpo import GRPOParams, TokenContext, list_checkpoints, train_grpo
from rlvr.weighted.weights import (
    advantage_weights,
    needs_reference,
    renormalize,
    token_divergence,
)

BASELINE = "baseline"
NO_DIVERGENCE = "none"
COLUMNS = WEIGHTED_RUNS.schema.names  # a run file's columns: the registry's (rlvr.store.registry)
EVAL_METRICS = ("accuracy", "stderr", "pass_at_n", "share_eq_format", "mean_length")
ACCURACY = "eval_accuracy"  # the metric every comparison uses


@dataclass(frozen=True)
class Variant:
    """One weighting: divergence (`none` for the baseline), signed α, scale s, and whether the
    weights are renormalised to mean 1 per minibatch."""

    name: str
    divergence: str = NO_DIVERGENCE
    alpha: float = 0.0
    s: float = 0.0
    normalize: bool = False

    @property
    def is_baseline(self) -> bool:
        return self.divergence == NO_DIVERGENCE


@dataclass(frozen=True)
class EvalSpec:
    """`weighted.eval`: how every run is evaluated (the same prompts, samples and random
    streams for all)."""

    prompts: int = 64  # the first `prompts` problems of the eval split
    n_samples: int = 4  # n of mean@n
    max_new_tokens: int = 64  # the steps testbed's responses run to ~60 tokens
    seed: int = 1234  # eval sampling streams, shared by every run (common random numbers)
    every: int = 12  # evaluate at step 0, every `every` steps, and at the last step
    # step 0 is the start model, the same for every run: off saves one eval per run (the
    # comparison uses the last step; the curves then start at the first `every`)
    at_start: bool = True

    def __post_init__(self) -> None:
        for key in ("prompts", "n_samples", "max_new_tokens", "every"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")


@dataclass(frozen=True)
class VariantParams:
    """`weighted.variants.<name>`: α > 0 boosts high-divergence tokens, < 0 low ones."""

    divergence: Literal["none", "k3_old", "js_base", "delta_base"] = NO_DIVERGENCE
    alpha: float = 0.0
    normalize: bool = False  # divide the weights by their minibatch mean: same step size


@dataclass(frozen=True)
class WeightedResources:
    """`weighted.resources`: speed only (not DVC params)."""

    workers: int = 1  # runs in flight at once (threads), each single-threaded

    def __post_init__(self) -> None:
        require(self.workers >= 1, "workers", "must be >= 1", "use a positive integer")


def _default_variants() -> dict[str, VariantParams]:
    # the study's k3 boosts, raw and renormalised to mean 1 per minibatch; alpha * p95 of
    # k3_old ~ 2 (p95 0.035-0.058 at the default `rl` knobs)
    out = {BASELINE: VariantParams()}
    for side, alpha in (("high", 50.0), ("low", -50.0)):
        out[f"k3_old_{side}"] = VariantParams("k3_old", alpha)
        out[f"k3_old_{side}_norm"] = VariantParams("k3_old", alpha, normalize=True)
    return out


def _default_rl() -> GRPOParams:
    # 64 rollouts per step (a steps-testbed run costs ~12 s); 3e-4 collapsed the base there
    return GRPOParams(steps=12, prompts_per_step=8, group_size=8, max_new_tokens=64, lr=1e-4,
                      save_every=12)


@dataclass(frozen=True)
class WeightedParams:
    """`weighted`: variants x seeds of GRPO/DAPO from one model, all with the same knobs.

    `rl` holds the trainer's knobs of every run (its `seed` is replaced by the run's seed, its
    `save_every` by `eval.every`, and a reference model is kept when `rl.track_kl` is set or
    the divergence needs one).
    """

    model: str = "base"  # every run starts from this model (resolved through `models`)
    # params.yaml's top-level `weighted_variants` (one DVC stage each; the grid is opt-in)
    variants: dict[str, VariantParams] = field(default_factory=_default_variants)
    s: float = 1.0  # weights lie in (1 - s/2, 1 + s/2)
    seeds: int = 3  # seeds 0..seeds-1 for every variant (paired: a seed is one rollout stream)
    rl: GRPOParams = field(default_factory=_default_rl)
    eval: EvalSpec = field(default_factory=EvalSpec)
    resources: WeightedResources = field(default_factory=WeightedResources)

    def __post_init__(self) -> None:
        require(BASELINE in self.variants, "variants", "needs a `baseline` entry",
                "add `baseline: {divergence: none}`")
        for name, entry in self.variants.items():
            key = f"variants.{name}"
            require(name.replace("_", "").isalnum() and name.islower(), key,
                    "is not a lowercase [a-z0-9_] name", "rename it (it names a directory)")
            require((entry.divergence == NO_DIVERGENCE) == (name == BASELINE),
                    f"{key}.divergence", "only `baseline` may (and must) use divergence none",
                    "give weighted variants a divergence")
        require(0.0 <= self.s < 2.0, "s", f"{self.s} is outside [0, 2)",
                "use 0 <= s < 2 so that weights stay positive")
        require(self.seeds >= 1, "seeds", "must be >= 1", "use e.g. 3")


class _RecordingHook:
    """The variant's weight hook, keeping every weighted token's D and w for the run totals."""

    def __init__(self, variant: Variant) -> None:
        self.variant = variant
        self.divergences: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []

    def __call__(self, ctx: TokenContext) -> torch.Tensor:
        d = token_divergence(self.variant.divergence, ctx)
        w = advantage_weights(d, ctx.mask, self.variant.s, self.variant.alpha)
        if self.variant.normalize:
            w = renormalize(w, ctx.mask)
        on = ctx.mask.bool()
        self.divergences.append(d.detach()[on].float())
        self.weights.append(w[on])
        return w

    def totals(self) -> dict[str, float]:
        if not self.weights:
            return {}
        d, w = torch.cat(self.divergences), torch.cat(self.weights)
        return {
            "weight_mean": float(w.mean()), "weight_std": float(w.std()) if len(w) > 1 else 0.0,
            "weight_min": float(w.min()), "weight_max": float(w.max()),
            "divergence_mean": float(d.mean()), "divergence_p95": float(d.quantile(0.95)),
        }


def variants_of(config: WeightedParams) -> list[Variant]:
    """The grid's variants in params order, baseline first (its s and α are 0)."""
    out = [Variant(BASELINE)]
    for name, entry in config.variants.items():
        if name != BASELINE:
            out.append(Variant(name, entry.divergence, entry.alpha, config.s, entry.normalize))
    return out


def _rows(variant: Variant, seed: int, step: int, metrics: dict[str, float]) -> list[dict]:
    return [
        {"variant": variant.name, "divergence": variant.divergence, "alpha": variant.alpha,
         "s": variant.s, "seed": seed, "step": step, "metric": k, "value": float(v)}
        for k, v in metrics.items()
    ]


def _eval_metrics(summary: dict[str, float | int]) -> dict[str, float]:
    names = {"stderr": "eval_accuracy_stderr"}
    return {names.get(k, f"eval_{k}"): float(summary[k]) for k in EVAL_METRICS}


def train_and_evaluate(
    base: ModelSpec,
    train_problems: Sequence[PromptRecord],
    eval_problems: Sequence[PromptRecord],
    grader: str,
    variant: Variant,
    seed: int,
    grpo: GRPOParams,
    evaluation: EvalSpec,
    out_path: str | Path,
    progress: bool = False,
    grid: GridShape | None = None,
) -> dict[str, float]:
    """Run one (variant, seed) from the base model and write its long-format rows to `out_path`
    once they pass the training-log gate (against `grid`, or this run alone).

    Returns a small summary: final accuracy and wall seconds.
    """
    start = time.perf_counter()
    policy, tokenizer = load_spec(base)
    sampling = SamplingParams(temperature=1.0, top_p=1.0,
                              max_new_tokens=evaluation.max_new_tokens, seed=evaluation.seed)

    grade = get_grader(grader, "task.grader")

    def evaluate(model) -> dict[str, float]:
        return _eval_metrics(evaluate_model(model, tokenizer, eval_problems, grade,
                                            evaluation.n_samples, sampling,
                                            chat_template=base.chat_template))

    rows = _rows(variant, seed, 0, evaluate(policy)) if evaluation.at_start else []
    hook = None if variant.is_baseline else _RecordingHook(variant)
    params = replace(grpo, seed=seed, save_every=evaluation.every,
                     track_kl=grpo.track_kl or needs_reference(variant.divergence))
    with tempfile.TemporaryDirectory(prefix="weighted-ckpt-") as ckpt:
        log = train_grpo(policy, tokenizer, train_problems, grade, params, weight_hook=hook,
                         checkpoint_dir=ckpt, progress=progress,
                         chat_template=base.chat_template)
        for step, path in list_checkpoints(ckpt):
            model, _ = load_model(path, dtype=base.dtype, device=base.device)
            rows += _rows(variant, seed, step, evaluate(model))
    for entry in log:
        metrics = {f"train_{k}": v for k, v in entry.items() if k != "step"}
        rows += _rows(variant, seed, int(entry["step"]), metrics)
    totals = {} if hook is None else hook.totals()
    totals["run_seconds"] = time.perf_counter() - start
    rows += _rows(variant, seed, grpo.steps, totals)
    table = pd.DataFrame(rows, columns=COLUMNS)
    grid = grid or GridShape((variant.name,), seed + 1, grpo.steps, evaluation.every,
                             evaluation.at_start)
    check_training(table, grid, [(variant.name, seed)], f"training_{variant.name}_seed{seed}",
                   None)
    with atomic_file(out_path) as tmp:
        table.to_parquet(tmp, index=False)
    final = table[(table.metric == ACCURACY) & (table.step == table.step.max())]
    return {"accuracy": float(final.value.iloc[0]), "seconds": totals["run_seconds"]}


def grid_shape(config: WeightedParams) -> GridShape:
    """What the grid's training logs hold (`rlvr.store.experiment_gates.check_training`)."""
    return GridShape(tuple(v.name for v in variants_of(config)), config.seeds, config.rl.steps,
                     config.eval.every, config.eval.at_start)


def grid_runs(config: WeightedParams, names: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(variant, seed) of every run of the named variants (all when `names` is None)."""
    known = [v.name for v in variants_of(config)]
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown variants {unknown}: params.yaml weighted.variants has {known}")
    chosen = known if names is None else [n for n in known if n in names]
    return [(name, seed) for name in chosen for seed in range(config.seeds)]


def check_grid(
    config: WeightedParams, models: ModelsParams, names: Sequence[str] | None, layout: Layout,
) -> tuple[list[tuple[str, int]], ModelSpec]:
    """The runs of the named variants and the spec of their start model, both checked (with
    the task split); writes nothing."""
    runs = grid_runs(config, names)
    base = models.spec(config.model, layout)
    check_model(base)
    if not layout.split("train").exists():
        raise ValueError(f"the weighted runs train on the family's train split, and "
                         f"{layout.split('train')} does not exist: give the training prompts "
                         "(a pair workspace: params.yaml `task.train_prompts`) and run the "
                         "prepare stage (dvc repro prepare)")
    for split in ("train", "eval"):
        load_prompt_file(layout.split(split), key="")  # exists and parses
    return runs, base


def plan_grid(
    config: WeightedParams, models: ModelsParams, names: Sequence[str] | None, layout: Layout,
) -> tuple[list[tuple[str, int]], ModelSpec]:
    """`check_grid`, then the runs' debris swept (their outputs claimed)."""
    runs, base = check_grid(config, models, names, layout)
    sweep_debris(*(p for v in dict(runs) for p in layout.outputs(f"weighted_run@{v}")))
    return runs, base


def run_grid_cell(
    config: WeightedParams, base: ModelSpec, layout: Layout, variant: str, seed: int, grader: str,
    progress: bool = False,
) -> dict[str, float]:
    """Train and evaluate run (variant, seed) of the grid from `base`; writes its run file.

    Runs torch on `weighted.rl.threads` threads (see `pin_torch_threads`).
    """
    pin_torch_threads(config.rl.threads)
    (chosen,) = [v for v in variants_of(config) if v.name == variant]
    return train_and_evaluate(
        base, load_prompt_file(layout.split("train"), key=""),
        load_prompt_file(layout.split("eval"), key="")[: config.eval.prompts], grader,
        chosen, seed, config.rl, config.eval, layout.weighted_run(variant, seed),
        progress=progress, grid=grid_shape(config),
    )
