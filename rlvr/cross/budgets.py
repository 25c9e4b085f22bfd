"""Accuracy by intervention budget: curves with bootstrap CIs, paired comparisons, half-gain.

`accuracy_by_budget` runs `sql/cross_sample/agg_cross_accuracy_by_budget.sql` over the finished
`cross_samples` table (one point per (arm, rule, target budget), prompt-cluster bootstrap
intervals); `paired` runs `agg_cross_paired.sql` over the `comparisons` the cells allow (a rule
minus random at the same target; minus the arm's primary alone; extrapolation minus the tuned
model alone; the companion's top-K shortcut minus the exact js cell), each with a paired
bootstrap interval. `budget_metrics` reads off per arm the endpoints, every rule's achieved
budget and accuracy at each target with those differences, and the budget at which forward
recovers half of the tuned model's gain (backward: loses half). Budgets are mean per-response
shares throughout, the measure the thresholds were calibrated to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from rlvr.cross import shortcuts
from rlvr.cross.calibration import CALIBRATION_FILE
from rlvr.cross.sweep import ENDPOINTS, CrossParams, arm_name, budget_key
from rlvr.layout import Layout
from rlvr.store.atomic import atomic_file, write_json
from rlvr.warehouse.sql import run_sql
from rlvr.warehouse.staging import add_staging
from rlvr.warehouse.views import complete_files, view_sql

CURVE_PLOT = "cross_accuracy_by_budget"
VERSUS_PLOT = "cross_rule_vs_random"
PAIRED_FILE = "paired.parquet"  # under the cross directory: every paired comparison


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


def _key(row: dict) -> tuple[str, str, float]:
    return row["arm"], row["rule"], row["target_budget"]


def comparisons(curve: Sequence[dict]) -> pa.Table:
    """The paired comparisons the cells of `curve` (`agg_cross_accuracy_by_budget` rows) allow:
    comparison, arm, rule, target_budget and the reference cell's reference_arm,
    reference_rule, reference_budget (see `agg_cross_paired.sql`)."""
    cells = {_key(r): r for r in curve}
    tuned_alone = sorted((r["direction"] != "extrapolate", r["arm"]) for r in curve
                         if r["rule"] == "none" and r["direction"] != "forward")
    rows = []

    def add(kind: str, row: dict, ref: tuple[str, str, float]) -> None:
        if ref in cells:
            rows.append({"comparison": kind, "arm": row["arm"], "rule": row["rule"],
                         "target_budget": row["target_budget"], "reference_arm": ref[0],
                         "reference_rule": ref[1], "reference_budget": ref[2]})

    for r in curve:
        arm, rule, budget = _key(r)
        if rule == "none":
            continue
        if rule not in (*ENDPOINTS, "random"):
            add("minus_random", r, (arm, "random", budget))
        add("minus_primary", r, (arm, "none", 0.0))
        if r["alpha"] > 0 and tuned_alone:  # extrapolation: against the tuned model alone
            own = arm if r["direction"] == "extrapolate" else tuned_alone[0][1]
            add("minus_tuned", r, (own, "none", 0.0))
        if r["top_k"] > 0:  # the shortcut against the exact arm's js cell (its own `all`)
            exact = arm_name(r["direction"], r["alpha"])
            add("minus_exact", r, (exact, "all" if rule == "all" else "js", budget))
    schema = pa.schema([("comparison", pa.string()), ("arm", pa.string()), ("rule", pa.string()),
                        ("target_budget", pa.float64()), ("reference_arm", pa.string()),
                        ("reference_rule", pa.string()), ("reference_budget", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


DIFFS = ("minus_random", "minus_primary", "minus_tuned", "minus_exact")


def budget_metrics(curve: Sequence[dict], paired_rows: Sequence[dict] = (),
                   calibration: Sequence[dict] = ()) -> dict[str, object]:
    """DVC metrics from the curve rows (`agg_cross_accuracy_by_budget`), the paired rows
    (`agg_cross_paired`) and the calibration rows (`calibration_table`).

    Per arm: direction, alpha, top_k, `accuracy_primary` / `accuracy_intervention` (the `none` /
    `all` endpoints), `all` (the `all` endpoint's paired differences), for arms without
    extrapolation `half_target` and `half_gain` per rule (budget share and tokens at which
    forward reaches half of the gain, backward loses half, interpolated along the rule's
    achieved budgets), and `budgets`: per target, per rule the achieved budget, threshold,
    calibration round, whether it hit the target, accuracy with its CI, and each paired
    difference (`DIFFS`) with its interval.
    """
    diffs: dict[tuple[str, str, float], dict[str, float]] = {}
    for d in paired_rows:
        diffs.setdefault(_key(d), {}).update({
            d["comparison"]: d["diff"], f"{d['comparison']}_low": d["diff_low"],
            f"{d['comparison']}_high": d["diff_high"]})
    out: dict[str, object] = {}
    for arm in dict.fromkeys(r["arm"] for r in curve):
        rows = [r for r in curve if r["arm"] == arm]
        ends = {r["rule"]: r for r in rows if r["rule"] in ENDPOINTS}
        if set(ends) != set(ENDPOINTS):
            raise ValueError(f"cross_sample: arm {arm} lacks its `none` or `all` endpoint "
                             "cells; rerun the cross_sample stage")
        acc0, acc1 = ends["none"]["accuracy"], ends["all"]["accuracy"]
        first = rows[0]
        entry: dict[str, object] = {
            "direction": first["direction"], "alpha": first["alpha"], "top_k": first["top_k"],
            "accuracy_primary": acc0, "accuracy_intervention": acc1,
            "all": diffs.get(_key(ends["all"]), {}), "budgets": {}}
        out[arm] = entry
        if not first["alpha"]:  # half of the gain: between the two models, not a blend
            entry |= _half_gain(rows, ends)
        calib = {(c["rule"], c["target_budget"]): c for c in calibration
                 if c["arm"] == arm and c["is_final"]}
        for r in sorted((r for r in rows if r["rule"] not in ENDPOINTS),
                        key=lambda r: (r["target_budget"], r["rule"])):
            point = {"achieved_budget": r["budget_share"], "budget_tokens": r["budget_tokens"],
                     "threshold": r["threshold"], "calibration_round": r["calibration_round"],
                     "accuracy": r["accuracy"], "accuracy_low": r["accuracy_low"],
                     "accuracy_high": r["accuracy_high"]}
            key = (r["rule"], r["target_budget"])
            if key in calib:
                point["on_target"] = calib[key]["on_target"]
            point |= diffs.get(_key(r), {})
            entry["budgets"].setdefault(budget_key(r["target_budget"]), {})[r["rule"]] = point
    return out


def _half_gain(rows: Sequence[dict], ends: dict[str, dict]) -> dict[str, object]:
    acc0, acc1 = ends["none"]["accuracy"], ends["all"]["accuracy"]
    target = acc0 + 0.5 * (acc1 - acc0)
    half: dict[str, object] = {}
    for rule in sorted({r["rule"] for r in rows} - set(ENDPOINTS)) if acc1 != acc0 else ():
        pts = sorted([(0.0, acc0, 0.0), (1.0, acc1, ends["all"]["budget_tokens"])] +
                     [(r["budget_share"], r["accuracy"], r["budget_tokens"]) for r in rows
                      if r["rule"] == rule])  # no gain to recover or lose: no half way
        share = half_gain_budget([(b, a) for b, a, _ in pts], target, rising=acc1 >= acc0)
        tokens = None if share is None else _interp([(b, t) for b, _, t in pts], share)
        half[rule] = {"budget_share": share, "budget_tokens": tokens}
    return {"half_target": target, "half_gain": half}


def _connect(cross_dir: str | Path) -> duckdb.DuckDBPyConnection:
    files = complete_files(Path(cross_dir) / "samples")
    if not files:
        raise FileNotFoundError(f"no finished cross_samples under {cross_dir}/samples; run the "
                                "cross_sample stage first")
    con = duckdb.connect()
    # one thread: a parallel sum adds in another order each run (cross.json's last bits moved
    # between reruns on the same cells); these tables are small
    con.sql("set threads = 1")
    con.sql(view_sql("cross_samples", files))
    tokens = complete_files(Path(cross_dir) / "tokens")
    if tokens:
        con.sql(view_sql("cross_tokens", tokens))
    add_staging(con)
    return con


def accuracy_by_budget(cross_dir: str | Path, n_bootstrap: int, alpha: float,
                       bootstrap_seed: int) -> pa.Table:
    """Run `agg_cross_accuracy_by_budget.sql` over the finished `cross_samples` table."""
    return run_sql(_connect(cross_dir), "agg_cross_accuracy_by_budget", {
        "n_bootstrap": n_bootstrap, "alpha": alpha, "bootstrap_seed": bootstrap_seed})


def paired(cross_dir: str | Path, wanted: pa.Table, n_bootstrap: int, alpha: float,
           bootstrap_seed: int) -> pa.Table:
    """Run `agg_cross_paired.sql` for the `wanted` comparisons (`comparisons`)."""
    con = _connect(cross_dir)
    con.register("cross_comparisons", wanted)
    return run_sql(con, "agg_cross_paired", {
        "n_bootstrap": n_bootstrap, "alpha": alpha, "bootstrap_seed": bootstrap_seed})


def rule_vs_random(table: pa.Table) -> pa.Table:
    """The minus_random rows of `paired` in the plot's columns (rule, random)."""
    rows = [r for r in table.to_pylist() if r["comparison"] == "minus_random"]
    names = {"budget_cell": "budget_rule", "budget_reference": "budget_random",
             "accuracy_cell": "accuracy_rule", "accuracy_reference": "accuracy_random"}
    keep = ("arm", "target_budget", "rule", "n_prompts", *names, "diff", "diff_low",
            "diff_high")
    return pa.Table.from_pylist([{names.get(k, k): r[k] for k in keep} for r in rows])


def write_budget_outputs(layout: Layout, cfg: CrossParams) -> dict[str, object]:
    """Write the curve and rule-vs-random plot CSVs, the paired comparisons, the shortcut
    measurements (`rlvr.cross.shortcuts`) and the `cross` metrics; returns the metrics."""
    args = (cfg.n_bootstrap, cfg.alpha, cfg.bootstrap_seed)
    curve = accuracy_by_budget(layout.cross_dir, *args)
    diffs = paired(layout.cross_dir, comparisons(curve.to_pylist()), *args)
    for table, name in ((curve, CURVE_PLOT), (rule_vs_random(diffs), VERSUS_PLOT)):
        with atomic_file(layout.plot(name)) as tmp:
            pa_csv.write_csv(table, tmp)
    with atomic_file(layout.cross_dir / PAIRED_FILE) as tmp:
        pq.write_table(diffs, tmp)
    calibration = pq.read_table(layout.cross_dir / CALIBRATION_FILE).to_pylist()
    metrics = budget_metrics(curve.to_pylist(), diffs.to_pylist(), calibration)
    metrics["shortcuts"] = shortcuts.write_shortcuts(layout, cfg, _connect(layout.cross_dir))
    write_json(metrics, layout.metrics("cross"))
    return metrics
