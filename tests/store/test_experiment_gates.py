"""The experiment tables' gates (`rlvr.store.experiment_gates`): faults planted in the
cross_samples, cross_tokens and decisiveness tables the stages wrote, and in weighted-grid logs
and results made by the grid's own row writer, are each caught with one line naming the row;
what the stages wrote passes; and a stage whose table fails its gate leaves it unmarked, so
`rlvr sql` refuses it (issue 21: a position removed from a cross_tokens part was served)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlvr.cli import main
from rlvr.cross.sweep import DIRECTIONS, ENDPOINTS, RULES, CrossCell, cell_path, publish_cross
from rlvr.decisive.positions import gate_run
from rlvr.layout import Layout
from rlvr.store.atomic import MARKER
from rlvr.store.experiment_gates import (
    CELL,
    GridShape,
    check_cross_samples,
    check_cross_tokens,
    check_training,
    check_weighted_results,
)
from rlvr.store.gates import GateFailed, read_parts
from rlvr.weighted.grid import COLUMNS, Variant, _rows
from rlvr.weighted.summary import summarize
from tests.test_bad_inputs import DECISIVE, built, run_decisive  # noqa: F401 (a fixture)

ALL_RULES = [*RULES, *ENDPOINTS]


@pytest.fixture(scope="module")
def tables(built, tmp_path_factory) -> Layout:  # noqa: F811 (the imported fixture)
    """A copy of the built data/ with the decisive stage run too: every experiment table."""
    layout = Layout(tmp_path_factory.mktemp("experiments") / "data")
    shutil.copytree(built.root, layout.root)
    run_decisive(layout)
    return layout


@pytest.fixture
def cross(tables) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_parts(tables.cross_dir / "samples"), read_parts(tables.cross_dir / "tokens")


def _raises(check, *args) -> str:
    with pytest.raises(GateFailed) as err:
        check(*args)
    return str(err.value)


def test_what_the_stages_wrote_passes(tables, cross, tmp_path):
    samples, tokens = cross
    assert check_cross_samples(samples, DIRECTIONS, ALL_RULES, tmp_path / "s.json")["rows"] > 0
    assert check_cross_tokens(tokens, samples, tmp_path / "t.json")["rows"] > 50
    for model in ("base", "rl"):
        path = tables.decisive_dir / f"positions/model={model}/part-00000.parquet"
        assert gate_run(tables, {"model": model, "path": str(path)}, DECISIVE)["rows"] > 5


def test_a_position_removed_from_a_cross_response_is_caught(cross, tmp_path):
    """issue 21's planted fault: one position of a response of the primary alone (rule
    `none`, so its switch count stays right) removed."""
    samples, tokens = cross
    first = tokens.index[tokens.rule == "none"][0]
    r = tokens.loc[first]
    response = (tokens[CELL + ["prompt_id", "sample_id"]] == r[CELL + ["prompt_id",
                                                                        "sample_id"]]).all(axis=1)
    n = int(response.sum())
    planted = tokens.drop(index=first + 2)
    line = _raises(check_cross_tokens, planted, samples, tmp_path / "t.json")
    assert line == (
        f"quality gate `cross_tokens` failed ({tmp_path / 't.json'}): response_check: {n - 1} of "
        f"{len(planted)} rows fail; e.g. {r.prompt_id}/{r.sample_id}: {n - 1} rows at positions "
        f"0..{n - 1} ({n - 1} distinct) with n_tokens {n}..{n}; a response has positions "
        "0..n_tokens-1, once each")


CROSS_TOKEN_FAULTS = [  # (id, plant, the start of the failure line it must give)
    ("duplicate_row", lambda t: pd.concat([t, t.iloc[[3]]], ignore_index=True),
     "duplicate key ['arm', 'rule', 'target_budget', 'seed', 'prompt_id', 'sample_id', "
     "'position']: 2 of"),
    ("token_id_changed", lambda t: t.assign(token_id=t.token_id.where(t.index != 3, 999)),
     "samples_check: 1 of"),
    ("switched_flag_flipped", lambda t: t.assign(is_switched=t.is_switched ^ (t.index == 3)),
     "samples_check: 1 of"),
    ("js_above_ln2", lambda t: t.assign(js=t.js.where(t.index != 3, 0.9)), "bounds_check: 1 of"),
    ("logprob_nan", lambda t: t.assign(logprob_primary=t.logprob_primary.where(
        t.index != 3, np.nan)), "bounds_check: 1 of"),
    ("unknown_response", lambda t: t.assign(sample_id=t.sample_id.where(t.index != 0, 77)),
     "samples_check: 1 of"),
]


@pytest.mark.parametrize("plant,start", [f[1:] for f in CROSS_TOKEN_FAULTS],
                         ids=[f[0] for f in CROSS_TOKEN_FAULTS])
def test_planted_cross_token_faults_are_caught(plant, start, cross, tmp_path):
    samples, tokens = cross
    text = _raises(check_cross_tokens, plant(tokens), samples, tmp_path / "t.json")
    assert text.startswith("quality gate `cross_tokens` failed") and start in text, text


CROSS_SAMPLE_FAULTS = [
    ("response_dropped", lambda s: s.drop(index=0), ["1 (cell, prompt) pairs missing; e.g. "
                                                     "arm "]),
    ("n_switched_above_n_tokens", lambda s: s.assign(n_switched=s.n_switched.where(
        s.index != 1, s.n_tokens + 1)), ["switch_check: 1 of"]),
    ("share_not_ratio", lambda s: s.assign(switch_share=s.switch_share.where(
        s.index != 1, 0.123)), ["switch_check: 1 of"]),
    ("length_wrong", lambda s: s.assign(n_tokens=s.n_tokens.where(s.index != 1, 999)),
     ["length_check: 1 of"]),
    ("models_swapped", lambda s: s.assign(primary_model=s.primary_model.where(
        s.index != 1, s.intervention_model)), ["model_check: 1 of"]),
    ("bogus_rule", lambda s: s.assign(rule=s.rule.where(s.index != 1, "bogus")),
     ["rule not in"]),
]


@pytest.mark.parametrize("plant,starts", [f[1:] for f in CROSS_SAMPLE_FAULTS],
                         ids=[f[0] for f in CROSS_SAMPLE_FAULTS])
def test_planted_cross_sample_faults_are_caught(plant, starts, cross, tmp_path):
    samples, _ = cross
    text = _raises(check_cross_samples, plant(samples), DIRECTIONS, ALL_RULES, tmp_path / "s.json")
    for start in starts:
        assert start in text, text


def _published_cells(layout: Layout) -> list[CrossCell]:
    """The cells of the published cross_samples table (what the flow passes to publish)."""
    rows = read_parts(layout.cross_dir / "samples").drop_duplicates(CELL)
    return [CrossCell(r.direction, r.primary_model, r.intervention_model, r.rule, r.threshold,
                      int(r.seed), r.target_budget, int(r.calibration_round), r.matched_rule,
                      alpha=float(r.alpha), top_k=int(r.top_k))
            for r in rows.itertuples()]


def test_publishing_a_cross_table_that_fails_its_gate_leaves_it_unmarked(tables, tmp_path,
                                                                         capsys):
    """The stage's own path: a cell's work part loses a position, publishing refuses to mark
    the table complete, and `rlvr sql` says so instead of serving it."""
    layout = Layout(tmp_path / "data")
    shutil.copytree(tables.root, layout.root)
    cells = _published_cells(layout)
    assert publish_cross(layout, cells)["tokens"] > 0  # as the stage wrote it: passes
    work = Path(cell_path(layout, cells[0], "tokens"))
    table = pq.read_table(work)
    pq.write_table(table.filter(np.arange(table.num_rows) != 1), work)  # position 1 gone
    with pytest.raises(GateFailed, match="(?s)cross_tokens.*response_check"):
        publish_cross(layout, cells)
    assert not (layout.cross_dir / "tokens" / MARKER).exists()
    assert main(["--data", str(layout.root), "sql", "select count(*) from cross_tokens"]) == 1
    assert "table `cross_tokens` is not complete" in capsys.readouterr().err


# --- decisiveness ---------------------------------------------------------------------------

def _decisive(tables: Layout, tmp_path: Path, plant) -> str:
    """Plant a fault in the base generator's part (a copy) and gate it."""
    source = tables.decisive_dir / "positions/model=base/part-00000.parquet"
    part = tmp_path / "part-00000.parquet"
    pq.write_table(pa.Table.from_pandas(plant(pq.read_table(source).to_pandas()),
                                        preserve_index=False), part)
    with pytest.raises(GateFailed) as err:
        gate_run(tables, {"model": "base", "path": str(part)}, DECISIVE)
    return str(err.value)


DECISIVE_FAULTS = [
    ("position_removed", lambda d: d.drop(index=1), ["response_check", "1 positions missing"]),
    ("value_not_a_share", lambda d: d.assign(value_before=d.value_before.where(
        d.index != 1, 0.3)), ["value_check: 1 of"]),
    ("delta_not_difference", lambda d: d.assign(delta_value=d.delta_value.where(
        d.index != 1, d.delta_value + 0.5)), ["value_check: 1 of"]),
    ("token_id_changed", lambda d: d.assign(token_id=d.token_id.where(d.index != 1, 999)),
     ["samples_check: 1 of"]),
    ("position_added", lambda d: pd.concat([d, d.iloc[[0]].assign(position=200)],
                                           ignore_index=True), ["samples_check: 1 of"]),
    ("rollouts_changed", lambda d: d.assign(n_rollouts=d.n_rollouts.where(d.index != 1, 3)),
     ["status_check: 1 of", "a fixed row without 2 rollouts"]),
    ("measured_row_marked_unsampled", lambda d: d.assign(status=d.status.where(
        d.index != 1, "unsampled")), ["status_check: 1 of", "an unmeasured row with rollouts"]),
    ("status_unknown", lambda d: d.assign(status=d.status.where(d.index != 1, "guessed")),
     ["status"]),
]


@pytest.mark.parametrize("plant,starts", [f[1:] for f in DECISIVE_FAULTS],
                         ids=[f[0] for f in DECISIVE_FAULTS])
def test_planted_decisiveness_faults_are_caught(plant, starts, tables, tmp_path):
    text = _decisive(tables, tmp_path, plant)
    assert text.startswith("quality gate `decisiveness_base` failed")
    for start in starts:
        assert start in text, text


# --- the weighted grid ----------------------------------------------------------------------

GRID = GridShape(("baseline", "k3_high"), seeds=2, steps=4, every=2)
VARIANTS = [Variant("baseline"), Variant("k3_high", "k3_old", 40.0, 1.0)]


def _log(variant: Variant, seed: int) -> list[dict]:
    """A run's rows as `train_and_evaluate` writes them (its own row writer)."""
    rng = np.random.default_rng(seed)
    rows = []
    for step in GRID.eval_steps:
        rows += _rows(variant, seed, step, {"eval_accuracy": float(rng.uniform(0.2, 0.8)),
                                            "eval_pass_at_n": 0.9})
    for step in range(1, GRID.steps + 1):
        rows += _rows(variant, seed, step, {"train_reward_mean": 0.5, "train_loss": 0.1})
    return rows + _rows(variant, seed, GRID.steps, {"run_seconds": 3.0})


@pytest.fixture
def training() -> pd.DataFrame:
    return pd.DataFrame([r for v in VARIANTS for s in range(GRID.seeds) for r in _log(v, s)],
                        columns=COLUMNS)


RUNS = [(v.name, s) for v in VARIANTS for s in range(GRID.seeds)]


def test_a_whole_grid_log_and_its_results_pass(training, tmp_path):
    assert check_training(training, GRID, RUNS, "training", tmp_path / "t.json")["rows"] > 40
    check_weighted_results(summarize(training, VARIANTS), GRID, tmp_path / "r.json")


TRAINING_FAULTS = [
    ("step_missing", lambda t: t[~((t.step == 3) & (t.metric == "train_reward_mean")
                                   & (t.variant == "k3_high") & (t.seed == 1))],
     "1 (run, step, metric) rows missing; e.g. variant k3_high, seed 1, step 3, metric "
     "train_reward_mean"),
    ("eval_missing", lambda t: t[~((t.step == 2) & (t.metric == "eval_accuracy")
                                   & (t.seed == 0) & (t.variant == "baseline"))],
     "1 (run, step, metric) rows missing; e.g. variant baseline, seed 0, step 2, metric "
     "eval_accuracy"),
    ("duplicate_metric", lambda t: pd.concat([t, t.iloc[[0]]], ignore_index=True),
     "duplicate key ['variant', 'seed', 'step', 'metric']: 2 of"),
    ("accuracy_above_one", lambda t: t.assign(value=t.value.where(t.index != 0, 1.5)),
     "value_check: 1 of"),
    ("step_past_the_end", lambda t: t.assign(step=t.step.where(t.index != 0, 9)),
     "bounds_check: 1 of"),
    ("unknown_variant", lambda t: t.assign(variant=t.variant.where(t.index != 0, "x")),
     "variant not in ['baseline', 'k3_high']"),
]


@pytest.mark.parametrize("plant,start", [f[1:] for f in TRAINING_FAULTS],
                         ids=[f[0] for f in TRAINING_FAULTS])
def test_planted_training_log_faults_are_caught(plant, start, training, tmp_path):
    text = _raises(check_training, plant(training).reset_index(drop=True), GRID, RUNS,
                   "training", tmp_path / "t.json")
    assert start in text, text


def test_training_lines_name_the_run_step_and_metric(training, tmp_path):
    planted = training.assign(value=training.value.where(training.index != 0, 1.5))
    r = training.iloc[0]
    assert _raises(check_training, planted, GRID, RUNS, "training", tmp_path / "t.json") == (
        f"quality gate `training` failed ({tmp_path / 't.json'}): value_check: 1 of "
        f"{len(training)} rows fail; e.g. {r.variant} seed {r.seed} step {r.step} metric "
        f"{r.metric}: a share outside [0, 1] (value=1.5)")


RESULT_FAULTS = [
    ("diff_wrong", lambda r: r.assign(diff=r["diff"] + (r.variant != "baseline") * 0.1),
     "diff_check: 1 of 2 rows fail; e.g. k3_high step 4: diff is not mean - the baseline's "
     "mean (diff="),
    ("variants_reordered", lambda r: r.iloc[::-1],
     "variants ['k3_high', 'baseline'] are not the grid's ['baseline', 'k3_high']"),
    ("seed_lost", lambda r: r.assign(n_seeds=1), "n_seeds not in [2]"),
    ("mean_above_one", lambda r: r.assign(mean=r["mean"].where(r.variant != "baseline", 1.2)),
     "bounds_check: 1 of 2"),
]


@pytest.mark.parametrize("plant,start", [f[1:] for f in RESULT_FAULTS],
                         ids=[f[0] for f in RESULT_FAULTS])
def test_planted_weighted_result_faults_are_caught(plant, start, training, tmp_path):
    results = summarize(training, VARIANTS)
    text = _raises(check_weighted_results, plant(results), GRID, tmp_path / "r.json")
    assert start in text, text


def test_the_summary_writes_nothing_from_logs_that_fail_their_gate(training, tmp_path):
    """The weighted_summary stage's path: a run file lost a step; no table, plot or metric is
    written, and the gate's result says why."""
    from rlvr.weighted.summary import write_summary

    layout = Layout(tmp_path / "data")
    for (variant, seed), run in training.groupby(["variant", "seed"]):
        path = layout.weighted_run(variant, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        keep = ~((run.metric == "train_reward_mean") & (run.step == 2)) | (variant == "baseline")
        run[keep].to_parquet(path, index=False)
    with pytest.raises(GateFailed, match="quality gate `training` failed .*2 \\(run, step, "
                                         "metric\\) rows missing"):
        write_summary([layout.weighted_run(v, s) for v, s in RUNS], VARIANTS, layout, GRID, RUNS)
    written = [p.relative_to(layout.root) for p in layout.root.rglob("*") if p.is_file()]
    runs = [f"weighted/runs/{v}/seed_{s}.parquet" for v, s in RUNS]
    assert sorted(map(str, written)) == sorted([*runs, "quality/weighted/training.json"])
