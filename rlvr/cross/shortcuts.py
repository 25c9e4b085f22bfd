"""What the companion study's shortcuts change, measured on the sweep's own cells.

The companion (RLVR-Directions, `extrapolate/extrapolate.py`) gates with ½(KL + reverse KL) over
the main model's top-50 log-probs (its "js"), mixes over those 50 tokens with the other model's
missing ones padded by its lowest top-50 value, and thresholds without a budget. Here:

- `gate_overlap`: on each exact arm's pilot (the primary's own trajectories, every step's signals
  recorded), every gate calibrated to each target budget as round 1 calibrates it, and the
  positions it would switch compared with the JS gate's: Jaccard overlap and the share of its
  positions JS also picks. Same prompts, seeds and tokens for every gate.
- `fixed_thresholds`: the budget the companion's own thresholds (`gap_neg` > 0.3 / 0.35 / 0.4,
  its DAPO / UniReason / ORZ runs) reach on the pilot: what "no budget" means on this pair.
- `agg_cross_mixing_shortcut.sql`: at the switched steps of top-K arms, the total variation
  between the exact and the top-K switch distributions and how often the draw changes.

The accuracy cost of the shortcuts at each budget is the `minus_exact` comparison of
`rlvr.cross.budgets` (top-K arm minus the exact arm's js cell, paired by prompt).
"""

from __future__ import annotations

from dataclasses import replace

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlvr.cross.calibration import read_signals, threshold_for_budget
from rlvr.cross.sweep import (
    CrossCell,
    CrossParams,
    budget_key,
    endpoint_cells,
    signal_column,
)
from rlvr.layout import Layout
from rlvr.store.atomic import atomic_file
from rlvr.warehouse.sql import run_sql

REFERENCE = "js"  # the study's gate, which the others are compared with
OVERLAP_RULES = ("kl_sym_topk", "kl_sym", "kl_base_tuned", "kl_tuned_base", "gap_neg",
                 "gap_pos", "gap_top_neg", "entropy", "delta")
COMPANION_THRESHOLDS = (0.3, 0.35, 0.4)  # its neg_logp thresholds -0.3 / -0.35 / -0.4
OVERLAP_FILE, FIXED_FILE, MIXING_FILE = ("gate_overlap.parquet", "fixed_thresholds.parquet",
                                         "mixing_shortcut.parquet")


def _pilots(cfg: CrossParams) -> dict[str, list[CrossCell]]:
    """The budget-0 cells of every exact arm (no blend, no top-K), by arm."""
    exact = [a for a in cfg.grid() if not a.alpha and not a.top_k]
    out: dict[str, list[CrossCell]] = {}
    for cell in endpoint_cells(exact, cfg.base_model, cfg.tuned_model, cfg.seeds):
        if cell.rule == "none":
            out.setdefault(cell.arm, []).append(cell)
    return out


def _gate(layout: Layout, pilot: list[CrossCell], rule: str) -> np.ndarray:
    probe = replace(pilot[0], rule=rule, threshold=0.0)
    return read_signals(layout, pilot, *signal_column(probe))[0]


def gate_overlap(layout: Layout, cfg: CrossParams) -> pa.Table:
    """Per exact arm, target budget and gate: the pilot share it switches at its round-1
    threshold, its Jaccard overlap with the JS gate's positions and the share of its positions
    JS also switches."""
    rows = []
    for arm, pilot in _pilots(cfg).items():
        _, responses = read_signals(layout, pilot, "js")
        signals = {r: _gate(layout, pilot, r) for r in (REFERENCE, *OVERLAP_RULES)}
        for target in cfg.budgets:
            picked = {r: v > threshold_for_budget(v, responses, target)
                      for r, v in signals.items()}
            ref = picked[REFERENCE]
            for rule in OVERLAP_RULES:
                mine = picked[rule]
                both = int((mine & ref).sum())
                rows.append({"arm": arm, "target_budget": target, "rule": rule,
                             "share": _share(mine, responses),
                             "share_js": _share(ref, responses),
                             "jaccard_with_js": both / max(int((mine | ref).sum()), 1),
                             "share_in_js": both / max(int(mine.sum()), 1)})
    return pa.Table.from_pylist(rows)


def _share(mask: np.ndarray, responses: np.ndarray) -> float:
    """Mean over responses of the share of their tokens in `mask` (the budget measure)."""
    _, which, lengths = np.unique(responses, return_inverse=True, return_counts=True)
    return float((np.bincount(which, weights=mask) / lengths).mean())


def fixed_thresholds(layout: Layout, cfg: CrossParams) -> pa.Table:
    """The pilot budget of the companion's unbudgeted `gap_neg` thresholds, per exact arm."""
    rows = []
    for arm, pilot in _pilots(cfg).items():
        _, responses = read_signals(layout, pilot, "js")
        values = _gate(layout, pilot, "gap_neg")
        rows += [{"arm": arm, "rule": "gap_neg", "threshold": t,
                  "pilot_budget": _share(values > t, responses)} for t in COMPANION_THRESHOLDS]
    return pa.Table.from_pylist(rows)


def write_shortcuts(layout: Layout, cfg: CrossParams, con: duckdb.DuckDBPyConnection
                    ) -> dict[str, object]:
    """Write the three tables under the cross directory; returns their metrics."""
    tables = {OVERLAP_FILE: gate_overlap(layout, cfg), FIXED_FILE: fixed_thresholds(layout, cfg),
              MIXING_FILE: run_sql(con, "agg_cross_mixing_shortcut")}
    for name, table in tables.items():
        with atomic_file(layout.cross_dir / name) as tmp:
            pq.write_table(table, tmp)
    overlap: dict[str, dict] = {}
    for r in tables[OVERLAP_FILE].to_pylist():
        overlap.setdefault(r["arm"], {}).setdefault(budget_key(r["target_budget"]), {})[
            r["rule"]] = {"jaccard_with_js": r["jaccard_with_js"], "share": r["share"]}
    fixed: dict[str, dict] = {}
    for r in tables[FIXED_FILE].to_pylist():
        fixed.setdefault(r["arm"], {})[f"gap_neg>{r['threshold']:g}"] = r["pilot_budget"]
    mixing: dict[str, dict] = {}
    for r in tables[MIXING_FILE].to_pylist():
        mixing.setdefault(r["arm"], {}).setdefault(budget_key(r["target_budget"]), {})[
            r["rule"]] = {"mean_tv": r["mean_tv"], "share_draw_differs": r["share_draw_differs"],
                          "n_switched": r["n_switched"]}
    return {"gate_overlap": overlap, "fixed_thresholds": fixed, "mixing": mixing}
