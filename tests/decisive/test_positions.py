"""The decisive stage's table side: which responses and positions are measured, how the
samples' sampling is recovered, and sql/decisive against pandas/scipy on a hand-made table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from scipy.stats import mannwhitneyu

from rlvr.decisive.estimates import detection
from rlvr.decisive.positions import (
    DecisiveParams,
    decisive_sql_params,
    sampling_of,
    select_items,
)
from rlvr.store.atomic import MARKER
from rlvr.store.tables import DECISIVE_SCHEMA, KEYS
from rlvr.warehouse.sql import run_sql
from rlvr.warehouse.views import connect

CFG = DecisiveParams(pivot_cuts=[0.1, 0.3], flag_shares=[0.1, 0.25])


def _samples(n_prompts: int = 4, n_samples: int = 3, temperature: float = 1.0) -> pa.Table:
    rng = np.random.default_rng(0)
    rows = []
    for p in range(n_prompts):
        for s in range(n_samples):
            rows.append({"prompt_id": f"p{p}", "sample_id": s, "prompt_token_ids": [1, 5],
                         "response_token_ids": rng.integers(4, 50, 5 + p).tolist() + [2],
                         "answer": "7", "reward": s % 2, "max_new_tokens": 64,
                         "temperature": temperature, "top_p": 1.0})
    return pa.Table.from_pylist(rows)


def test_select_items_takes_the_first_prompts_and_samples_and_samples_positions():
    cfg = DecisiveParams(n_prompts=2, samples_per_prompt=2)
    items = select_items(_samples(), cfg)
    assert [m.key for m in items] == ["decisive/p0/0", "decisive/p0/1", "decisive/p1/0",
                                      "decisive/p1/1"]
    assert all(m.positions == list(range(len(m.response_ids))) for m in items)
    few = select_items(_samples(), DecisiveParams(n_prompts=2, samples_per_prompt=2,
                                                  positions=3))
    assert all(len(m.positions) == 3 and m.positions == sorted(set(m.positions)) for m in few)
    assert few == select_items(_samples(), DecisiveParams(n_prompts=2, samples_per_prompt=2,
                                                          positions=3))  # seeded
    assert len({tuple(m.positions) for m in few}) > 1  # each response draws its own


def test_sampling_is_the_samples_own_and_must_be_one_setting():
    assert sampling_of(_samples(temperature=0.7), 5).temperature == pytest.approx(0.7)
    mixed = pa.concat_tables([_samples(1), _samples(1, temperature=0.5)])
    with pytest.raises(ValueError, match="mix sampling settings"):
        sampling_of(mixed, 0)


def _tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Token rows of pair base__rl (and of base__sft, which must be ignored) and measured rows
    of both generators' models; some measured positions have no token row (left out)."""
    rng = np.random.default_rng(seed)
    tokens, measured = [], []
    for pair in ("base__rl", "base__sft"):
        for generator, model in (("base", "base"), ("tuned", pair.split("__")[1])):
            for resp in range(6):
                n = int(rng.integers(8, 15))
                js = np.where(rng.random(n) < 0.6, 0.0, rng.uniform(0, 0.6, n))
                tokens.append(pd.DataFrame({
                    "pair": pair, "generator": generator, "tuned_kind": pair.split("__")[1],
                    "rl_step": None, "prompt_id": f"p{resp}", "sample_id": np.int32(0),
                    "position": np.arange(n, dtype=np.int32), "role": rng.choice(
                        ["method", "other", None], n),
                    "js": js.astype(np.float32),
                    "entropy_base": rng.gamma(1, 0.5, n).astype(np.float32),
                    "delta_logprob": rng.normal(0, 1, n).astype(np.float32)}))
                if pair == "base__rl":
                    dv = np.where(js > 0.3, rng.choice([-1, 1], n) * rng.uniform(0, 1, n),
                                  np.where(rng.random(n) < 0.1, 0.5, 0.0))
                    dv = np.r_[dv, 0.9, -0.9]  # two positions past the token rows
                    half = rng.uniform(0, 0.3, n + 2)
                    measured.append(pd.DataFrame({
                        "model": model, "prompt_id": f"p{resp}", "sample_id": np.int32(0),
                        "position": np.arange(n + 2, dtype=np.int32),
                        "delta_value": dv, "delta_low": dv - half, "delta_high": dv + half}))
    return pd.concat(tokens, ignore_index=True), pd.concat(measured, ignore_index=True)


def _write(root, tokens: pd.DataFrame, measured: pd.DataFrame) -> None:
    ds.write_dataset(pa.Table.from_pandas(tokens, preserve_index=False), root / "tokens",
                     format="parquet", partitioning=["pair", "generator"],
                     partitioning_flavor="hive")
    (root / "tokens" / MARKER).write_text("ok\n")
    full = measured.assign(
        model_kind="x", n_tokens=np.int32(1), token_id=np.int32(0), reward=np.int8(0),
        prob_token=0.5, stratum="all", inclusion_prob=1.0, status="fixed",
        n_rollouts=np.int32(8), n_resampled_other=np.int32(0),
        **{c: 0.5 for c in ("value_before", "value_before_low", "value_before_high",
                            "value_after", "value_after_low", "value_after_high")})
    for model, g in full.groupby("model"):
        out = root / "decisive" / "positions" / f"model={model}"
        out.mkdir(parents=True)
        table = pa.Table.from_pandas(g[DECISIVE_SCHEMA.names], preserve_index=False)
        pq.write_table(table.cast(DECISIVE_SCHEMA), out / "part-00000.parquet")
    (root / "decisive" / "positions" / MARKER).write_text("ok\n")


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    tokens, measured = _tables()
    _write(root, tokens, measured)
    return connect(root), tokens, measured


def _joined(tokens: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    t = tokens[tokens.pair == "base__rl"].assign(
        model=lambda d: np.where(d.generator == "base", "base", "rl"))
    out = measured.merge(t, on=["model", "prompt_id", "sample_id", "position"])
    return out.assign(abs_delta=out.delta_logprob.abs().astype(float))


def test_detection_matches_pandas_and_scipy(con):
    connection, tokens, measured = con
    frame = run_sql(connection, "int_decisive_frame", decisive_sql_params(CFG)).to_pandas()
    got = detection(frame, CFG.pivot_cuts, CFG.flag_shares, 200, 0.05, 0)
    assert not got.duplicated(["generator", "signal", "pivot_cut", "flag_share"]).any()
    joined = _joined(tokens, measured)
    expected = []
    for (gen, signal), cut, share in [(k, c, q) for k in
                                      [(g, s) for g in ("base", "tuned")
                                       for s in ("js", "entropy_base", "abs_delta")]
                                      for c in CFG.pivot_cuts for q in CFG.flag_shares]:
        g = joined[joined.generator == gen]
        score = g[signal].astype(float).to_numpy()
        pivotal = ((g.delta_value.abs() >= cut) & ((g.delta_low > 0) | (g.delta_high < 0)))
        pivotal = pivotal.to_numpy()
        higher = (score[None, :] > score[:, None]).sum(1)
        flagged = higher < share * len(g)
        u = mannwhitneyu(score[pivotal], score[~pivotal]).statistic
        expected.append({"generator": gen, "signal": signal, "pivot_cut": cut,
                         "flag_share": share, "n_positions": len(g),
                         "n_pivotal": int(pivotal.sum()), "n_flagged": int(flagged.sum()),
                         "precision": (pivotal & flagged).sum() / flagged.sum(),
                         "recall": (pivotal & flagged).sum() / pivotal.sum(),
                         "auc": u / (pivotal.sum() * (~pivotal).sum())})
    expected = pd.DataFrame(expected)
    merged = got.merge(expected, on=["generator", "signal", "pivot_cut", "flag_share"],
                       suffixes=("", "_ref"))
    assert len(merged) == len(expected) == len(got)
    for col in ("n_positions", "n_pivotal", "n_flagged", "precision", "recall", "auc"):
        np.testing.assert_allclose(merged[col].astype(float), merged[f"{col}_ref"].astype(float),
                                   rtol=1e-9, err_msg=col)
    assert merged.n_pivotal.min() > 0 and len(joined) < len(measured)  # unmatched rows left out


def test_roles_match_pandas(con):
    connection, tokens, measured = con
    got = run_sql(connection, "agg_decisive_roles", decisive_sql_params(CFG)).to_pandas()
    assert not got.duplicated(["generator", "role", "pivot_cut"]).any()
    joined = _joined(tokens, measured).assign(role=lambda d: d.role.fillna("(none)"))
    for row in got.itertuples():
        g = joined[(joined.generator == row.generator) & (joined.role == row.role)]
        pivotal = (g.delta_value.abs() >= row.pivot_cut) & ((g.delta_low > 0)
                                                            | (g.delta_high < 0))
        assert row.n_positions == len(g)
        assert row.share_pivotal == pytest.approx(pivotal.mean())
        assert row.mean_abs_delta_value == pytest.approx(g.delta_value.abs().mean())


def test_decisiveness_keys_are_unique_in_the_schema():
    assert set(KEYS["decisiveness"]) <= set(DECISIVE_SCHEMA.names)


@pytest.mark.parametrize("design", ["exhaustive", "stratified"])
def test_a_generator_is_measured_into_one_row_per_position(scored_data, design):
    """The stage's library path on a scored tiny pipeline: every position of the measured
    responses has a row, the design's record is consistent (bound rows are never pivotal and
    carry the exact bound; inclusion probabilities are the strata's draw rates), detection runs
    on it, and a rerun keeps the part file."""
    from rlvr.decisive.positions import (
        gate_run,
        measure_generator,
        plan_decisive,
        publish,
        run_detection,
    )
    from rlvr.layout import Layout
    from rlvr.models.specs import ModelsParams
    from rlvr.store.gates import GateFailed
    from rlvr.store.tables import DECISIVE_SCHEMA

    layout = Layout(scored_data)
    # random tiny models spread their mass (p ~ 1 / vocabulary): cuts near 1 make some
    # positions bound (1 - p < 0.9915: p > 0.0085) and leave others open
    cfg = DecisiveParams(generators=["base"], n_prompts=3, samples_per_prompt=2, design=design,
                         rollouts=4, per_stratum=3, uniform_positions=4, min_rollouts=2,
                         max_rollouts=4,
                         n_bootstrap=20, pivot_cuts=[0.9915, 0.995])
    (job,) = plan_decisive(cfg, "toy", ModelsParams(), layout)
    job = type(job)(job.generator, job.entry, job.samples, job.tokens,
                    str(scored_data / f"decisive-{design}" / "part-00000.parquet"))
    run = measure_generator(job, cfg, "toy")
    rows = pq.read_table(job.out_path).to_pandas()
    tokens = pq.read_table(job.tokens).to_pandas()
    assert len(rows) == run["positions"] == len(tokens[tokens.prompt_id.isin(rows.prompt_id)
                                                       & (tokens.sample_id < 2)])
    assert not rows.duplicated(KEYS["decisiveness"]).any()
    measured = rows[rows.status != "unsampled"]
    assert run["measured"] == len(measured) > 0
    gap = 1 - rows.prob_token.astype(float)
    if design == "exhaustive":
        assert (rows.status == "fixed").all() and (rows.inclusion_prob == 1).all()
    else:
        bound = rows[rows.stratum == "bound"]
        assert set(bound.status) == {"bound"} and (bound.inclusion_prob == 1).all()
        assert 0 < len(bound) < len(rows)
        assert (gap[bound.index] < 0.9915).all() and (gap[rows.stratum != "bound"] >= 0.9915).all()
        np.testing.assert_allclose(bound.delta_high, gap[bound.index], rtol=1e-6)
        assert bound.delta_value.isna().all()
        for h, g in rows[rows.stratum != "bound"].groupby("stratum"):
            take = min(4 if h == "uniform" else 3, len(g))
            assert (g.status != "unsampled").sum() == take, h
            assert g.inclusion_prob.to_numpy() == pytest.approx(take / len(g))
        rolled = rows[rows.status.isin(["decided", "capped", "no_streams"])]
        assert ((rolled.delta_low >= -gap[rolled.index] - 1e-6)
                & (rolled.delta_high <= gap[rolled.index] + 1e-6)).all()
    assert measure_generator(job, cfg, "toy")["skipped"]
    if design == "stratified":  # the stage's own output path, then detection over it
        (job,) = plan_decisive(cfg, "toy", ModelsParams(), layout)
        run = measure_generator(job, cfg, "toy")
        publish(layout, [run], cfg)
        # the gate: scanned streams may exceed max_rollouts (the real pair's run scanned 62
        # at a cap of 32), diverging rollouts may not
        part = pq.read_table(run["path"]).to_pandas()
        seq = part.status.isin(["decided", "capped", "no_streams"]).to_numpy()
        assert seq.any()
        for col, value, passes in (("n_rollouts", 3 * cfg.max_rollouts, True),
                                   ("n_resampled_other", cfg.max_rollouts + 1, False)):
            planted = part.copy()
            planted.loc[seq.nonzero()[0][0], col] = value
            if col == "n_resampled_other":
                planted.loc[seq.nonzero()[0][0], "n_rollouts"] = 3 * cfg.max_rollouts
            path = scored_data / f"planted-{col}.parquet"
            pq.write_table(pa.Table.from_pandas(planted, preserve_index=False,
                                                schema=DECISIVE_SCHEMA), path)
            if passes:
                gate_run(layout, {"model": "base", "path": str(path)}, cfg)
            else:
                with pytest.raises(GateFailed, match="more than 4 diverging rollouts"):
                    gate_run(layout, {"model": "base", "path": str(path)}, cfg)
        found = run_detection(layout, cfg)["agg_decisive_detection"].to_pandas()
        assert (found.n_positions == len(rows)).all()
        assert (found.n_measured == len(measured)).all()
