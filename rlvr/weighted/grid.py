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
  - at eval steps (0 = the base model, then every `eval_every` and the last step):
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
  `paired_ci_low, paired_ci_high, paired_p_value` (paired t over the shared seeds, 95%) and
  `distinguishable` (the Welch interval excludes 0). Baseline rows have NaN differences.
- `curves.parquet`: `variant, step, accuracy_mean, accuracy_std, n_seeds` (eval steps);
  `<plots>/weighted_accuracy.csv`: `step, <variant>...` (mean accuracy, DVC plots);
  `<plots>/weighted_final.csv`: `variant, mean, std`; the metrics JSON: `runs`,
  `run_seconds_mean` and per variant `accuracy_mean, accuracy_std` (+ `diff, diff_lo, diff_hi,
  distinguishable`).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from rlvr.config import WeightedConfig
from rlvr.generation.sampler import SamplingParams
from rlvr.models.loading import load_model
from rlvr.store.atomic import atomic_file, write_json
from rlvr.testbed.digits import Problem
from rlvr.testbed.split import read_problems
from rlvr.training.evaluation import evaluate_model
from rlvr.training.grpo import GRPOParams, TokenContext, list_checkpoints, train_grpo
from rlvr.weighted.weights import advantage_weights, needs_reference, token_divergence

BASELINE = "baseline"
NO_DIVERGENCE = "none"
COLUMNS = ["variant", "divergence", "alpha", "s", "seed", "step", "metric", "value"]
EVAL_METRICS = ("accuracy", "stderr", "pass_at_n", "share_eq_format", "mean_length")
ACCURACY = "eval_accuracy"  # the metric every comparison uses


@dataclass(frozen=True)
class Variant:
    """One weighting: divergence (`none` for the baseline), signed α, and scale s."""

    name: str
    divergence: str = NO_DIVERGENCE
    alpha: float = 0.0
    s: float = 0.0

    @property
    def is_baseline(self) -> bool:
        return self.divergence == NO_DIVERGENCE


@dataclass(frozen=True)
class EvalSpec:
    """How every run is evaluated: the same prompts, samples and random streams for all."""

    n_samples: int = 4  # n of mean@n
    max_new_tokens: int = 24
    seed: int = 1234  # eval sampling streams, shared by every run (common random numbers)
    every: int = 10  # evaluate at step 0, every `every` steps, and at the last step


class _RecordingHook:
    """The variant's weight hook, keeping every weighted token's D and w for the run totals."""

    def __init__(self, variant: Variant) -> None:
        self.variant = variant
        self.divergences: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []

    def __call__(self, ctx: TokenContext) -> torch.Tensor:
        d = token_divergence(self.variant.divergence, ctx)
        w = advantage_weights(d, ctx.mask, self.variant.s, self.variant.alpha)
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


def variants_of(config: WeightedConfig) -> list[Variant]:
    """The grid's variants in params order, baseline first (its s and α are 0)."""
    out = [Variant("baseline")]
    for name, entry in config.variants.items():
        if name != BASELINE:
            out.append(Variant(name, entry["divergence"], float(entry.get("alpha", 0.0)),
                               config.s))
    return out


def grpo_params(config: WeightedConfig) -> GRPOParams:
    """The trainer knobs every run shares; the seed is set per run."""
    return GRPOParams(
        steps=config.steps, prompts_per_step=config.prompts_per_step,
        group_size=config.group_size, max_new_tokens=config.max_new_tokens, lr=config.lr,
        clip_low=config.clip_low, clip_high=config.clip_high, kl_coef=0.0,
        minibatches=config.minibatches, epochs=config.epochs, dynamic_sampling=True,
        save_every=config.eval_every,
    )


def eval_spec(config: WeightedConfig) -> EvalSpec:
    return EvalSpec(n_samples=config.eval_samples, max_new_tokens=config.max_new_tokens,
                    seed=config.eval_seed, every=config.eval_every)


def run_path(out_dir: str | Path, variant: str, seed: int) -> Path:
    """Where run (variant, seed) writes its rows: `<out_dir>/runs/<variant>/seed_<seed>.parquet`."""
    return Path(out_dir) / "runs" / variant / f"seed_{seed}.parquet"


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
    base_dir: str | Path,
    train_problems: Sequence[Problem],
    eval_problems: Sequence[Problem],
    variant: Variant,
    seed: int,
    grpo: GRPOParams,
    evaluation: EvalSpec,
    out_path: str | Path,
    progress: bool = False,
) -> dict[str, float]:
    """Run one (variant, seed) from the base model and write its long-format rows to `out_path`.

    Returns a small summary: final accuracy and wall seconds.
    """
    start = time.perf_counter()
    policy, tokenizer = load_model(base_dir, made_by="pretrain")
    sampling = SamplingParams(temperature=1.0, top_p=1.0,
                              max_new_tokens=evaluation.max_new_tokens, seed=evaluation.seed)

    def evaluate(model) -> dict[str, float]:
        return _eval_metrics(evaluate_model(model, tokenizer, eval_problems,
                                            evaluation.n_samples, sampling))

    rows = _rows(variant, seed, 0, evaluate(policy))
    hook = None if variant.is_baseline else _RecordingHook(variant)
    params = replace(grpo, seed=seed, save_every=evaluation.every)
    with tempfile.TemporaryDirectory(prefix="weighted-ckpt-") as ckpt:
        log = train_grpo(policy, tokenizer, train_problems, params, weight_hook=hook,
                         need_reference=needs_reference(variant.divergence),
                         checkpoint_dir=ckpt, progress=progress)
        for step, path in list_checkpoints(ckpt):
            model, _ = load_model(path)
            rows += _rows(variant, seed, step, evaluate(model))
    for entry in log:
        metrics = {f"train_{k}": v for k, v in entry.items() if k != "step"}
        rows += _rows(variant, seed, int(entry["step"]), metrics)
    totals = {} if hook is None else hook.totals()
    totals["run_seconds"] = time.perf_counter() - start
    rows += _rows(variant, seed, grpo.steps, totals)
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_file(out_path) as tmp:
        table.to_parquet(tmp, index=False)
    final = table[(table.metric == ACCURACY) & (table.step == table.step.max())]
    return {"accuracy": float(final.value.iloc[0]), "seconds": totals["run_seconds"]}


def collect_runs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate run files into the `training` table, sorted by run, step and metric."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"missing run files {missing}: run their `weighted_run` stages")
    table = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return table.sort_values(["variant", "seed", "step", "metric"]).reset_index(drop=True)


def final_accuracy(training: pd.DataFrame) -> pd.DataFrame:
    """Held-out accuracy of each run at its last eval step: variant, seed, step, accuracy."""
    acc = training[training.metric == ACCURACY]
    last = acc.groupby(["variant", "seed"]).step.transform("max")
    out = acc[acc.step == last][["variant", "seed", "step", "value"]]
    return out.rename(columns={"value": "accuracy"}).reset_index(drop=True)


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, ...]:
    """mean(a) − mean(b) with its Welch t interval: (diff, low, high, df, p). NaN if undefined."""
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, math.nan, math.nan, math.nan, math.nan
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    p = 2 * stats.t.sf(abs(diff) / se, df)
    return diff, diff - half, diff + half, float(df), float(p)


def paired_interval(d: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Paired t interval of the mean per-seed difference `d`: (low, high, p); NaN if undefined."""
    if len(d) < 2 or d.std(ddof=1) == 0:
        return math.nan, math.nan, math.nan
    se = d.std(ddof=1) / math.sqrt(len(d))
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * se
    p = 2 * stats.t.sf(abs(d.mean()) / se, len(d) - 1)
    return float(d.mean() - half), float(d.mean() + half), float(p)


def summarize(training: pd.DataFrame, variants: Sequence[Variant]) -> pd.DataFrame:
    """Results table (see the module docstring): final accuracy per variant against baseline."""
    final = final_accuracy(training)
    base = final[final.variant == BASELINE].set_index("seed").accuracy
    if base.empty:
        raise ValueError("the training table has no `baseline` runs: add `baseline` to "
                         "weighted.variants in params.yaml")
    rows = []
    for v in variants:
        acc = final[final.variant == v.name].set_index("seed").accuracy
        row = {"variant": v.name, "divergence": v.divergence, "alpha": v.alpha, "s": v.s,
               "n_seeds": len(acc), "step": int(final[final.variant == v.name].step.max()),
               "mean": float(acc.mean()),
               "std": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan}
        nan5 = (math.nan,) * 5
        diff, low, high, df, p = nan5 if v.is_baseline else welch_interval(acc.values, base.values)
        shared = acc.index.intersection(base.index)
        pl, ph, pp = (math.nan,) * 3 if v.is_baseline else paired_interval(
            (acc[shared] - base[shared]).values)
        row |= {"diff": diff, "diff_lo": low, "diff_hi": high, "df": df, "p_value": p,
                "paired_ci_low": pl, "paired_ci_high": ph, "paired_p_value": pp,
                "distinguishable": bool(low > 0 or high < 0)}
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_curves(training: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std (over seeds) held-out accuracy per variant and eval step (long format)."""
    acc = training[training.metric == ACCURACY]
    curves = acc.groupby(["variant", "step"]).value.agg(["mean", "std", "count"]).reset_index()
    return curves.rename(columns={"mean": "accuracy_mean", "std": "accuracy_std",
                                  "count": "n_seeds"})


def wide_curves(curves: pd.DataFrame, variants: Sequence[Variant]) -> pd.DataFrame:
    """`step, <variant>...` mean accuracy, one column per variant in grid order (DVC plots)."""
    wide = curves.pivot(index="step", columns="variant", values="accuracy_mean")
    return wide[[v.name for v in variants]].reset_index()


def metrics_summary(results: pd.DataFrame, training: pd.DataFrame) -> dict:
    """DVC metrics: per variant mean/std accuracy and the difference to baseline with its CI."""
    out: dict = {"runs": int(training.groupby(["variant", "seed"]).ngroups)}
    seconds = training[training.metric == "run_seconds"].value
    out["run_seconds_mean"] = round(float(seconds.mean()), 2)
    for r in results.itertuples():
        entry = {"accuracy_mean": r.mean, "accuracy_std": r.std}
        if r.variant != BASELINE:
            entry |= {"diff": r.diff, "diff_lo": r.diff_lo, "diff_hi": r.diff_hi,
                      "distinguishable": r.distinguishable}
        out[r.variant] = {k: (None if isinstance(v, float) and math.isnan(v) else
                              (round(v, 4) if isinstance(v, float) else v))
                          for k, v in entry.items()}
    return out


def write_summary(
    run_files: Sequence[str | Path],
    variants: Sequence[Variant],
    out_dir: str | Path,
    metrics_path: str | Path,
    plots_dir: str | Path,
) -> dict:
    """Aggregate the run files into every output of the grid; returns the DVC metrics dict.

    Writes `<out_dir>/training.parquet`, `results.parquet`, `results.csv`, `curves.parquet`,
    `<plots_dir>/weighted_accuracy.csv` (wide curves), `weighted_final.csv` (variant, mean, std)
    and the metrics JSON.
    """
    training = collect_runs(run_files)
    results = summarize(training, variants)
    curves = accuracy_curves(training)
    out_dir, plots_dir = Path(out_dir), Path(plots_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (("training", training), ("results", results), ("curves", curves)):
        with atomic_file(out_dir / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
    with atomic_file(out_dir / "results.csv") as tmp:
        results.to_csv(tmp, index=False)
    with atomic_file(plots_dir / "weighted_accuracy.csv") as tmp:
        wide_curves(curves, variants).to_csv(tmp, index=False)
    with atomic_file(plots_dir / "weighted_final.csv") as tmp:
        results[["variant", "mean", "std"]].to_csv(tmp, index=False)
    metrics = metrics_summary(results, training)
    write_json(metrics, metrics_path)
    return metrics


def grid_runs(config: WeightedConfig, names: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(variant, seed) of every run of the named variants (all when `names` is None)."""
    known = [v.name for v in variants_of(config)]
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown variants {unknown}: params.yaml weighted.variants has {known}")
    chosen = known if names is None else [n for n in known if n in names]
    return [(name, seed) for name in chosen for seed in range(config.seeds)]


def run_grid_cell(
    config: WeightedConfig, variant: str, seed: int, progress: bool = False
) -> dict[str, float]:
    """Train and evaluate run (variant, seed) of the grid; writes `run_path(...)`.

    Sets torch's (process-wide) intra-op thread count to `config.torch_threads` first.
    """
    torch.set_num_threads(config.torch_threads)
    (chosen,) = [v for v in variants_of(config) if v.name == variant]
    task_dir = Path(config.task_dir)
    return train_and_evaluate(
        config.base_model,  # every run starts from the same base checkpoint
        read_problems(task_dir / "train.parquet"),
        read_problems(task_dir / "eval.parquet")[: config.eval_prompts],
        chosen, seed, grpo_params(config), eval_spec(config),
        run_path(config.out_dir, variant, seed), progress=progress,
    )


def summarize_grid(config: WeightedConfig) -> dict:
    """Aggregate every run of the grid into the tables, plots and metrics (`write_summary`)."""
    files = [run_path(config.out_dir, v, s) for v, s in grid_runs(config)]
    return write_summary(files, variants_of(config), config.out_dir, config.metrics_file,
                         config.plots_dir)
