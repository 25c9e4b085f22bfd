"""Matched budgets: each rule's threshold picked so that its budget hits the common targets.

A budget is the mean over responses of switched / generated tokens, so a token of a response of
n tokens weighs 1 / n in it. Round 1 reads the pilot, the budget-0 cells (the primary alone),
which record every step's signals: the threshold at which a weighted share `b` of the pilot's
tokens would switch is a weighted upper quantile of the rule's signal (`threshold_for_budget`).
Every arm is calibrated from its own pilot. Switching changes the trajectory that follows, so
the achieved budget can miss the target; an (arm, rule, budget) group off by more than
`budget_tolerance` x target is re-picked from its own round-1 trajectories (which record the
signals the mixed prefixes saw), up to `calibration_rounds`. The random rule's rate is the
target (its expected per-response share), then rate x target / achieved. Thresholds are shared
by all seeds of a group: seeds are replicates of one rule, not separate tunings.

With `random_match: per_response`, the random control is not calibrated but copies the final
js cells of its arm: each random response switches at the rate its js response (same prompt,
sample and seed, so the same token stream) reached, which matches the spread of budgets, not
only its mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rlvr.cross.sweep import CrossCell, CrossParams, arm_cell, cell_path, signal_column
from rlvr.generation.samples import sample_keys
from rlvr.layout import Layout
from rlvr.store.atomic import atomic_file
from rlvr.testbed.prompts import PromptRecord

CALIBRATION_FILE = "calibration.parquet"  # under the cross directory


def threshold_for_budget(values: np.ndarray, responses: np.ndarray, target: float) -> float:
    """The threshold t whose per-response mean share of tokens with value > t is nearest
    `target`.

    values: (N,) a signal at every token; responses: (N,) which response each token belongs
    to. Each token weighs 1 / (its response's length x the number of responses), so the share
    above t is the mean over responses of their share above t. t is placed midway between two
    adjacent distinct values (below the smallest value: t = smallest - 1), so float noise in a
    rerun of the same trajectory does not flip a decision.
    """
    assert len(values) == len(responses) and len(values) > 0, "one response id per token"
    _, which, lengths = np.unique(responses, return_inverse=True, return_counts=True)
    weights = 1.0 / (lengths[which] * len(lengths))
    distinct, where = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True)
    mass = np.bincount(where, weights=weights, minlength=len(distinct))
    at_or_above = np.cumsum(mass[::-1])[::-1]  # [k]: share of tokens with value >= distinct[k]
    k = int(np.argmin(np.abs(at_or_above - target)))
    return float(distinct[0] - 1.0 if k == 0 else (distinct[k - 1] + distinct[k]) / 2)


def read_signals(layout: Layout, cells: Sequence[CrossCell], column: str, sign: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Every token's `column` (times `sign`) over the cells' work parts, and a response id per
    token."""
    values, responses = [], []
    for i, cell in enumerate(cells):
        t = pq.read_table(cell_path(layout, cell, "tokens"),
                          columns=[column, "prompt_id", "sample_id"])
        values.append(sign * t[column].to_numpy().astype(np.float64))
        ids = pc.binary_join_element_wise(pc.cast(pa.scalar(str(i)), pa.string()), t["prompt_id"],
                                          pc.cast(t["sample_id"], pa.string()), "/")
        responses.append(ids.to_numpy(zero_copy_only=False))
    return np.concatenate(values), np.concatenate(responses)


def achieved_budget(layout: Layout, cells: Sequence[CrossCell]) -> float:
    """Mean per-response switch share over every response of `cells` (their seeds pooled)."""
    shares = [pq.read_table(cell_path(layout, c, "samples"), columns=["switch_share"])
              ["switch_share"].to_numpy() for c in cells]
    return float(np.concatenate(shares).mean())


def groups(cells: Sequence[CrossCell]) -> dict[tuple[str, str, float], list[CrossCell]]:
    """Cells by (arm, rule, target budget), in order."""
    out: dict[tuple[str, str, float], list[CrossCell]] = {}
    for cell in cells:
        out.setdefault(cell.group, []).append(cell)
    return out


def on_target(achieved: float, target: float, tolerance: float) -> bool:
    return abs(achieved - target) <= tolerance * target


def plan_round(cfg: CrossParams, layout: Layout, round_: int, pilot: Sequence[CrossCell],
               previous: Sequence[CrossCell]) -> list[CrossCell]:
    """The cells of calibration round `round_` (1: from each arm's pilot; later: the groups of
    the previous round that missed their target). Empty when nothing is left to calibrate.

    pilot: the budget-0 (`none`) cells; previous: the cells of round `round_ - 1`.
    """
    planned: list[tuple[CrossCell, float]] = []  # a cell of the group, its new threshold
    if round_ == 1:
        for arm in cfg.grid():
            base = [c for c in pilot if c.arm == arm.name]
            for rule, target in arm.points:
                cell = arm_cell(arm, cfg.base_model, cfg.tuned_model, rule, 0.0, 0, target)
                if rule == "random":
                    if cfg.random_match == "global":
                        planned.append((cell, target))
                    continue
                values, responses = read_signals(layout, base, *signal_column(cell))
                planned.append((cell, threshold_for_budget(values, responses, target)))
    else:
        for (_, rule, target), cells in groups(previous).items():
            achieved = achieved_budget(layout, cells)
            if on_target(achieved, target, cfg.budget_tolerance):
                continue
            old = cells[0].threshold
            if rule == "random":  # expected share ~ rate: rescale it (double it if none switched)
                new = min(1.0, old * (target / achieved if achieved > 0 else 2.0))
            else:
                values, responses = read_signals(layout, cells, *signal_column(cells[0]))
                new = threshold_for_budget(values, responses, target)
            if new != old:  # the same threshold would decode the same cells again
                planned.append((cells[0], new))
    return [replace(cell, threshold=threshold, seed=seed, calibration_round=round_)
            for cell, threshold in planned for seed in cfg.seeds]


def final_cells(layout: Layout, cells: Sequence[CrossCell]) -> list[CrossCell]:
    """Per group, the calibration round whose achieved budget is nearest its target (ties: the
    later round): what the tables and metrics report."""
    chosen: dict[tuple[str, str, float], int] = {}
    for group, members in groups(cells).items():
        rounds: dict[int, list[CrossCell]] = {}
        for cell in members:
            rounds.setdefault(cell.calibration_round, []).append(cell)
        chosen[group] = min(rounds, key=lambda r: (
            abs(achieved_budget(layout, rounds[r]) - group[2]), -r))
    return [c for c in cells if c.calibration_round == chosen[c.group]]


def per_response_random(layout: Layout, js_cells: Sequence[CrossCell],
                        records: Sequence[PromptRecord], n: int) -> list[CrossCell]:
    """Random cells whose per-row rates are the switch shares of the matching js responses."""
    _, keys = sample_keys(records, n)
    out = []
    for cell in js_cells:
        assert cell.rule == "js", "per-response random copies js cells"
        t = pq.read_table(cell_path(layout, cell, "samples"),
                          columns=["prompt_id", "sample_id", "switch_share"]).to_pydict()
        got = [f"{p}/{s}" for p, s in zip(t["prompt_id"], t["sample_id"], strict=True)]
        assert got == keys, "js rows are not in sample_keys order"
        rates = tuple(float(r) for r in t["switch_share"])
        out.append(replace(cell, rule="random", threshold=float(np.mean(rates)),
                           matched_rule="js", rates=rates))
    return out


CALIBRATION_SCHEMA = pa.schema([
    ("arm", pa.string()), ("direction", pa.string()), ("rule", pa.string()),
    ("target_budget", pa.float64()),
    ("calibration_round", pa.int32()), ("threshold", pa.float64()),
    ("achieved_budget", pa.float64()), ("on_target", pa.bool_()), ("is_final", pa.bool_()),
])


def calibration_table(layout: Layout, cells: Sequence[CrossCell], final: Sequence[CrossCell],
                      tolerance: float) -> pa.Table:
    """One row per (arm, rule, budget, round) tried: its threshold and achieved budget."""
    kept = {(c.group, c.calibration_round) for c in final}
    rows = []
    for (arm, rule, target), members in groups(cells).items():
        for round_ in sorted({c.calibration_round for c in members}):
            those = [c for c in members if c.calibration_round == round_]
            achieved = achieved_budget(layout, those)
            rows.append({"arm": arm, "direction": those[0].direction, "rule": rule,
                         "target_budget": target,
                         "calibration_round": round_, "threshold": those[0].threshold
                         if those[0].rates is None else float(np.mean(those[0].rates)),
                         "achieved_budget": achieved,
                         "on_target": on_target(achieved, target, tolerance),
                         "is_final": ((arm, rule, target), round_) in kept})
    return pa.Table.from_pylist(rows, schema=CALIBRATION_SCHEMA)


def write_calibration(layout: Layout, cells: Sequence[CrossCell], tolerance: float
                      ) -> list[CrossCell]:
    """Write the calibration table of every round tried; returns the final cells."""
    final = final_cells(layout, cells)
    with atomic_file(layout.cross_dir / CALIBRATION_FILE) as tmp:
        pq.write_table(calibration_table(layout, cells, final, tolerance), tmp)
    return final
