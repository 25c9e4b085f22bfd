"""The weighted grid's comparison: every run's rows into tables, curves, intervals and metrics.

Columns are the contract with the report (see `rlvr.weighted.grid` for the files). Differences
to the baseline get a Welch interval (seeds as independent samples) and a paired interval over
the shared seeds (a seed gives every variant the same first rollout batch). The grid's power is
stated as the minimal detectable effect of the paired test (`paired_mde`): the true difference it
finds with probability `POWER` at level `ALPHA`, given the spread of the per-seed differences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from rlvr.layout import Layout
from rlvr.store.atomic import atomic_file, sweep_debris, write_json
from rlvr.store.experiment_gates import GridShape, check_training, check_weighted_results
from rlvr.store.registry import WEIGHTED_RUNS
from rlvr.weighted.grid import (
    ACCURACY,
    BASELINE,
    Variant,
    WeightedParams,
    grid_runs,
    grid_shape,
    variants_of,
)


def collect_runs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate run files into the `training` table, sorted by run, step and metric."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"missing run files {missing}: run their `weighted_run` stages")
    table = WEIGHTED_RUNS.read_files(paths).to_pandas()  # each file is whole (atomic rename)
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


ALPHA, POWER = 0.05, 0.8  # the paired test's level and the power the MDE is stated at


def paired_mde(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimal detectable effect of a two-sided paired t test over `n` pairs.

    The true mean difference whose test at level `alpha` rejects with probability `power`, for
    per-pair differences with standard deviation `sd` (exact: noncentral t, df = n - 1).
    NaN when n < 2 or sd is not positive.
    """
    if n < 2 or not sd > 0:
        return math.nan
    df, root_n = n - 1, math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(delta: float) -> float:
        nc = delta * root_n / sd
        # the wrong-sign tail is tiny for delta > 0; scipy returns NaN for it at large nc
        wrong = float(np.nan_to_num(stats.nct.cdf(-crit, df, nc), nan=0.0))
        return float(stats.nct.sf(crit, df, nc)) + wrong - power

    high = (crit + 1.0) * sd / root_n  # below the MDE's noncentrality; doubled until above it
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-12 * sd))


STUDY_EFFECT = 0.025  # the study's gain of either k3 boost over DAPO: 44.9 / 45.1 vs 42.5


def seeds_for(sd: float, effect: float, most: int = 100_000) -> int | None:
    """The fewest paired seeds whose MDE (`paired_mde`) at per-seed sd `sd` is <= `effect`:
    the grid that would detect `effect`. None when `sd` is undefined or `most` do not suffice."""
    if not sd > 0 or not effect > 0 or paired_mde(sd, most) > effect:
        return None
    low, high = 1, most  # paired_mde falls with n: bisect for the first n that reaches `effect`
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if paired_mde(sd, mid) > effect else (low, mid)
    return high


def pooled_sd(groups: Sequence[np.ndarray]) -> tuple[float, int]:
    """Pooled within-group standard deviation and its degrees of freedom (sum of n - 1)."""
    groups = [g for g in groups if len(g) > 1]
    df = sum(len(g) - 1 for g in groups)
    if df == 0:
        return math.nan, 0
    return math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups) / df), df


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
               "normalize": v.normalize, "n_seeds": len(acc),
               "step": int(final[final.variant == v.name].step.max()),
               "mean": float(acc.mean()),
               "std": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan}
        nan5 = (math.nan,) * 5
        diff, low, high, df, p = nan5 if v.is_baseline else welch_interval(acc.values, base.values)
        shared = acc.index.intersection(base.index)
        d = (acc[shared] - base[shared]).values
        pl, ph, pp = (math.nan,) * 3 if v.is_baseline else paired_interval(d)
        sd = math.nan if v.is_baseline or len(d) < 2 else float(d.std(ddof=1))
        row |= {"diff": diff, "diff_lo": low, "diff_hi": high, "df": df, "p_value": p,
                "paired_ci_low": pl, "paired_ci_high": ph, "paired_p_value": pp,
                "paired_sd": sd, "paired_mde": paired_mde(sd, len(d)),
                "distinguishable": bool(pl > 0 or ph < 0)}
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


def power_summary(results: pd.DataFrame, training: pd.DataFrame) -> dict[str, float]:
    """The grid's noise and power: seed-to-seed std of the baseline, mean eval standard error,
    pooled sd of the paired differences, the paired MDE at that sd (n = the seeds) and how
    many paired seeds would detect the study's effect (`STUDY_EFFECT`) at that sd.

    The pooled sd pools the per-seed differences of every weighted variant (more degrees of
    freedom than one variant's n - 1), so the MDE describes the design, not one lucky variant.
    """
    final = final_accuracy(training)
    base = final[final.variant == BASELINE].set_index("seed").accuracy
    diffs = []
    for _, acc in final[final.variant != BASELINE].groupby("variant"):
        acc = acc.set_index("seed").accuracy
        shared = acc.index.intersection(base.index)
        diffs.append((acc[shared] - base[shared]).values)
    sd, df = pooled_sd(diffs)
    last = training[training.metric == "eval_accuracy_stderr"]
    last = last[last.step == last.groupby(["variant", "seed"]).step.transform("max")]
    n = len(base)
    return {"n_seeds": n, "baseline_seed_std": float(base.std(ddof=1)) if n > 1 else math.nan,
            "eval_stderr_mean": float(last.value.mean()), "paired_sd_pooled": sd,
            "paired_sd_df": df, "mde_paired": paired_mde(sd, n), "alpha": ALPHA, "power": POWER,
            "study_effect": STUDY_EFFECT, "seeds_for_study_effect": seeds_for(sd, STUDY_EFFECT)}


def metrics_summary(results: pd.DataFrame, training: pd.DataFrame) -> dict:
    """DVC metrics: per variant mean/std accuracy and the difference to baseline with its CIs,
    and the grid's `power` (`power_summary`)."""
    out: dict = {"runs": int(training.groupby(["variant", "seed"]).ngroups)}
    seconds = training[training.metric == "run_seconds"].value
    out["run_seconds_mean"] = round(float(seconds.mean()), 2)
    out["power"] = {k: _clean(v) for k, v in power_summary(results, training).items()}
    for r in results.itertuples():
        entry = {"accuracy_mean": r.mean, "accuracy_std": r.std, "divergence": r.divergence,
                 "alpha": r.alpha, "normalize": bool(r.normalize)}
        if r.variant != BASELINE:
            entry |= {"diff": r.diff, "diff_lo": r.diff_lo, "diff_hi": r.diff_hi,
                      "paired_ci_low": r.paired_ci_low, "paired_ci_high": r.paired_ci_high,
                      "paired_mde": r.paired_mde, "distinguishable": r.distinguishable}
        out[r.variant] = {k: _clean(v) for k, v in entry.items()}
    return out


def _clean(v: object) -> object:
    """JSON-safe: NaN -> None, floats rounded for readable diffs, numpy scalars unwrapped."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 4)
    return v


def write_summary(
    run_files: Sequence[str | Path], variants: Sequence[Variant], layout: Layout,
    grid: GridShape, runs: Sequence[tuple[str, int]],
) -> dict:
    """Aggregate the run files into every output of the grid; returns the DVC metrics dict.

    The union of the `runs` and the results table pass their gates (`grid`, results in
    `<quality>/weighted/`) before anything is written. Writes `weighted/training.parquet`,
    `results.parquet`, `results.csv`, `curves.parquet`, the plots `weighted_accuracy` (wide
    curves) and `weighted_final` (variant, mean, std), and the `weighted` metrics.
    """
    training = collect_runs(run_files)
    quality = layout.quality_dir("weighted")
    check_training(training, grid, runs, "training", quality / "training.json")
    results = summarize(training, variants)
    check_weighted_results(results, grid, quality / "results.json")
    curves = accuracy_curves(training)
    out_dir = layout.weighted_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (("training", training), ("results", results), ("curves", curves)):
        with atomic_file(out_dir / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
    with atomic_file(out_dir / "results.csv") as tmp:
        results.to_csv(tmp, index=False)
    with atomic_file(layout.plot("weighted_accuracy")) as tmp:
        wide_curves(curves, variants).to_csv(tmp, index=False)
    with atomic_file(layout.plot("weighted_final")) as tmp:
        results[["variant", "mean", "std"]].to_csv(tmp, index=False)
    metrics = metrics_summary(results, training)
    write_json(metrics, layout.metrics("weighted"))
    return metrics


def summarize_grid(config: WeightedParams, layout: Layout) -> dict:
    """Aggregate every run of the grid into the tables, plots and metrics (`write_summary`)."""
    runs = grid_runs(config)
    files = [layout.weighted_run(v, s) for v, s in runs]
    sweep_debris(*layout.outputs("weighted_summary"))
    return write_summary(files, variants_of(config), layout, grid_shape(config), runs)
