"""Accuracy by intervention budget: the sweep's curves with bootstrap CIs, and half-gain budgets.

`accuracy_by_budget` runs `sql/cross_sample/agg_cross_accuracy_by_budget.sql` over the finished
`cross_samples` table (one point per swept cell group, prompt-cluster bootstrap intervals);
`budget_metrics` reads off, per direction and rule, the budget at which forward recovers half of
the tuned model's gain (backward: loses half).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv

from rlvr.cross.sweep import DIRECTIONS, CrossParams
from rlvr.layout import Layout
from rlvr.store.atomic import atomic_file, write_json
from rlvr.warehouse.sql import run_sql
from rlvr.warehouse.views import complete_files, view_sql


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


def write_budget_outputs(layout: Layout, cfg: CrossParams) -> dict[str, object]:
    """Write the accuracy-by-budget plot CSV and the `cross` metrics; returns the metrics."""
    curve = accuracy_by_budget(layout.cross_dir, cfg.n_bootstrap, cfg.alpha, cfg.bootstrap_seed)
    with atomic_file(layout.plot("cross_accuracy_by_budget")) as tmp:
        pa_csv.write_csv(curve, tmp)
    metrics = budget_metrics(curve.to_pylist())
    write_json(metrics, layout.metrics("cross"))
    return metrics
