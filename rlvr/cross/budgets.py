"""Accuracy by intervention budget: curves with bootstrap CIs, rule minus random, half-gain.

`accuracy_by_budget` runs `sql/cross_sample/agg_cross_accuracy_by_budget.sql` over the finished
`cross_samples` table (one point per (direction, rule, target budget), prompt-cluster bootstrap
intervals); `rule_vs_random` runs `agg_cross_rule_vs_random.sql` (each rule minus the random
control at the same target, paired bootstrap). `budget_metrics` reads off per direction the
endpoints, every rule's achieved budget and accuracy at each target, its difference to random,
and the budget at which forward recovers half of the tuned model's gain (backward: loses half).
Budgets are mean per-response shares throughout, the measure the thresholds were calibrated to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from rlvr.cross.calibration import CALIBRATION_FILE
from rlvr.cross.sweep import DIRECTIONS, ENDPOINTS, CrossParams
from rlvr.layout import Layout
from rlvr.store.atomic import atomic_file, write_json
from rlvr.warehouse.sql import run_sql
from rlvr.warehouse.views import complete_files, view_sql

CURVE_PLOT = "cross_accuracy_by_budget"
VERSUS_PLOT = "cross_rule_vs_random"


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


def _interp(points: Sequence[tuple[float, float]], x: float) -> float:
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return math.nan


def budget_key(target: float) -> str:
    """The metrics key of a target budget, e.g. 0.05 -> "0.05"."""
    return f"{target:g}"


def budget_metrics(curve: Sequence[dict], versus: Sequence[dict] = (),
                   calibration: Sequence[dict] = ()) -> dict[str, object]:
    """DVC metrics from the curve rows (`agg_cross_accuracy_by_budget`), the rule-vs-random rows
    (`agg_cross_rule_vs_random`) and the calibration rows (`calibration_table`).

    Per direction: `accuracy_primary` / `accuracy_intervention` (the `none` / `all` endpoints),
    `half_target`, `half_gain` per rule (budget share and tokens at which forward reaches half
    of the gain, backward loses half, interpolated along the rule's achieved budgets), and
    `budgets`: per target, per rule the achieved budget, threshold, calibration round, whether
    it hit the target, accuracy with its CI, and (rules other than random) minus_random with
    its paired CI.
    """
    out: dict[str, object] = {}
    for direction in DIRECTIONS:
        rows = [r for r in curve if r["direction"] == direction]
        if not rows:
            continue
        ends = {r["rule"]: r for r in rows if r["rule"] in ENDPOINTS}
        if set(ends) != set(ENDPOINTS):
            raise ValueError(f"cross_sample: direction {direction} lacks its `none` or `all` "
                             "endpoint cells; rerun the cross_sample stage")
        acc0, acc1 = ends["none"]["accuracy"], ends["all"]["accuracy"]
        target = acc0 + 0.5 * (acc1 - acc0)
        entry: dict[str, object] = {"accuracy_primary": acc0, "accuracy_intervention": acc1,
                                    "half_target": target, "half_gain": {}, "budgets": {}}
        out[direction] = entry
        rules = sorted({r["rule"] for r in rows} - set(ENDPOINTS))
        for rule in rules if acc1 != acc0 else ():  # no gain to recover or lose: no half way
            pts = sorted([(0.0, acc0, 0.0), (1.0, acc1, ends["all"]["budget_tokens"])] +
                         [(r["budget_share"], r["accuracy"], r["budget_tokens"]) for r in rows
                          if r["rule"] == rule])
            share = half_gain_budget([(b, a) for b, a, _ in pts], target, rising=acc1 >= acc0)
            tokens = None if share is None else _interp([(b, t) for b, _, t in pts], share)
            entry["half_gain"][rule] = {"budget_share": share, "budget_tokens": tokens}
        calib = {(c["rule"], c["target_budget"]): c for c in calibration
                 if c["direction"] == direction and c["is_final"]}
        diffs = {(v["rule"], v["target_budget"]): v for v in versus
                 if v["direction"] == direction}
        for r in sorted((r for r in rows if r["rule"] not in ENDPOINTS),
                        key=lambda r: (r["target_budget"], r["rule"])):
            point = {"achieved_budget": r["budget_share"], "budget_tokens": r["budget_tokens"],
                     "threshold": r["threshold"], "calibration_round": r["calibration_round"],
                     "accuracy": r["accuracy"], "accuracy_low": r["accuracy_low"],
                     "accuracy_high": r["accuracy_high"]}
            key = (r["rule"], r["target_budget"])
            if key in calib:
                point["on_target"] = calib[key]["on_target"]
            if key in diffs:
                d = diffs[key]
                point |= {"minus_random": d["diff"], "minus_random_low": d["diff_low"],
                          "minus_random_high": d["diff_high"]}
            entry["budgets"].setdefault(budget_key(r["target_budget"]), {})[r["rule"]] = point
    return out


def _run(cross_dir: str | Path, name: str, params: dict) -> pa.Table:
    files = complete_files(Path(cross_dir) / "samples")
    if not files:
        raise FileNotFoundError(f"no finished cross_samples under {cross_dir}/samples; run the "
                                "cross_sample stage first")
    con = duckdb.connect()
    con.sql(view_sql("cross_samples", files))
    return run_sql(con, name, params)


def accuracy_by_budget(cross_dir: str | Path, n_bootstrap: int, alpha: float,
                       bootstrap_seed: int) -> pa.Table:
    """Run `agg_cross_accuracy_by_budget.sql` over the finished `cross_samples` table."""
    return _run(cross_dir, "agg_cross_accuracy_by_budget", {
        "n_bootstrap": n_bootstrap, "alpha": alpha, "bootstrap_seed": bootstrap_seed})


def rule_vs_random(cross_dir: str | Path, n_bootstrap: int, alpha: float,
                   bootstrap_seed: int) -> pa.Table:
    """Run `agg_cross_rule_vs_random.sql` over the finished `cross_samples` table."""
    return _run(cross_dir, "agg_cross_rule_vs_random", {
        "n_bootstrap": n_bootstrap, "alpha": alpha, "bootstrap_seed": bootstrap_seed})


def write_budget_outputs(layout: Layout, cfg: CrossParams) -> dict[str, object]:
    """Write the curve and rule-vs-random plot CSVs and the `cross` metrics; returns them."""
    args = (layout.cross_dir, cfg.n_bootstrap, cfg.alpha, cfg.bootstrap_seed)
    curve, versus = accuracy_by_budget(*args), rule_vs_random(*args)
    for table, name in ((curve, CURVE_PLOT), (versus, VERSUS_PLOT)):
        with atomic_file(layout.plot(name)) as tmp:
            pa_csv.write_csv(table, tmp)
    calibration = pq.read_table(layout.cross_dir / CALIBRATION_FILE).to_pylist()
    metrics = budget_metrics(curve.to_pylist(), versus.to_pylist(), calibration)
    write_json(metrics, layout.metrics("cross"))
    return metrics
