"""Each sql/ analysis on a small hand-made token table, against an independent pandas/numpy/scipy
computation; result keys must be unique and not null."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from scipy import stats

from rlvr.layout import Layout
from rlvr.store.atomic import MARKER
from rlvr.testbed.digits import ROLES
from rlvr.tokens.analysis import AnalyzeParams, analysis_queries
from rlvr.warehouse.sql import bind_params, load_sql, query_params, run_sql
from rlvr.warehouse.staging import staging_sql
from rlvr.warehouse.views import connect

PAIRS = ["base__rl", "base__sft", "base__rft", "base__rl_step_10", "base__rl_step_20"]
CFG = AnalyzeParams(
    thresholds=[0.001, 0.01, 0.1, 0.3], n_entropy_bins=4, n_position_bins=4, n_edge_positions=3,
    min_token_count=5, top_tokens=3, max_rank=4,
)
PARAMS = CFG.sql_params()
TAU = PARAMS["tau"]

KEYS = {
    "stg_pairs": ["pair"],
    "agg_sparsity": ["pair", "generator", "threshold"],
    "agg_js_quantiles": ["pair", "generator", "quantile"],
    "agg_js_histogram": ["pair", "generator", "bin_index"],
    "agg_js_by_entropy_fixed": ["pair", "generator", "bin_index"],
    "agg_js_by_entropy_quantile": ["pair", "generator", "bin_index"],
    "agg_entropy_by_divergence": ["pair", "generator", "is_divergent"],
    "agg_js_by_position": ["pair", "generator", "bin_index"],
    "agg_js_by_position_edges": ["pair", "generator", "anchor", "token_offset"],
    "agg_topk_overlap": ["pair", "generator", "subset", "k"],
    "agg_reallocation": ["pair", "generator", "subset"],
    "agg_rank_histogram": ["pair", "generator", "subset", "rank_bucket"],
    "agg_token_identity": ["pair", "generator", "token_id"],
    "agg_checkpoint_evolution": ["pair"],
    "agg_family_comparison": ["pair", "generator"],
    "agg_truncation": ["pair", "generator"],
    "agg_correctness": ["pair", "generator", "is_correct"],
    "agg_roles": ["pair", "generator", "role"],
    "agg_role_detection": ["pair", "generator", "threshold"],
    "agg_js_concentration": ["pair", "generator", "mass_share"],
    "agg_js_lorenz": ["pair", "generator", "population_share"],
    "agg_response_divergence": ["pair", "generator", "prompt_id", "sample_id"],
}


def make_tokens(seed: int = 0) -> pd.DataFrame:
    """Token rows for every pair and generator; base responses share keys across pairs."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 14, size=8)  # 8 responses per group, the same for every pair
    frames = []
    for pair in PAIRS:
        for generator in ("base", "tuned"):
            lens = lengths if generator == "base" else rng.integers(3, 14, size=8)
            n = int(lens.sum())
            js = np.where(rng.random(n) < 0.3, rng.uniform(0.05, 0.69, n),
                          rng.exponential(0.004, n))
            js[rng.random(n) < 0.1] = 0.0  # exact zeros: ties for the rank correlation
            js_top_p = np.where(rng.random(n) < 0.3, 0.0, js + rng.normal(0, 0.02, n)).clip(0)
            rank = rng.integers(1, 8, n)
            # the other direction: rank 1 exactly where the tuned top-1 has base rank 1
            rank_back = np.where(rank == 1, 1, rng.integers(2, 8, n))
            roles = np.array(list(ROLES) + [None], dtype=object)[rng.integers(0, 6, n)]
            tuned = pair.split("__")[1]
            frame = pd.DataFrame({
                "pair": pair,
                "generator": generator,
                "tuned_kind": "checkpoint" if tuned.startswith("rl_step_") else tuned,
                "rl_step": int(tuned.split("_")[-1]) if tuned.startswith("rl_step_") else None,
                "prompt_id": np.repeat([f"p{i // 2}" for i in range(8)], lens),
                "sample_id": np.repeat(np.arange(8) % 2, lens).astype(np.int32),
                "position": np.concatenate([np.arange(k) for k in lens]).astype(np.int32),
                "n_tokens": np.repeat(lens, lens).astype(np.int32),
                "token_id": rng.integers(0, 6, n).astype(np.int32),
                "role": roles,
                "reward": np.repeat(rng.integers(0, 2, 8), lens).astype(np.int8),
                # exact zeros, as one-hot rows give: ties that must share an entropy bin
                "entropy_base": np.where(rng.random(n) < 0.3, 0.0,
                                         rng.gamma(1.0, 0.8, n)).astype(np.float32),
                "js": js.astype(np.float32),
                "js_top_p": js_top_p.astype(np.float32),
                "rank_in_base_of_top1_tuned": rank.astype(np.int32),
                "rank_in_tuned_of_top1_base": rank_back.astype(np.int32),
                "prob_base_of_top1_tuned": (rng.uniform(0, 0.05, n) * 8 / rank).astype(
                    np.float32),
                **{f"topk_overlap_{k}": (rng.integers(0, k + 1, n) / k).astype(np.float32)
                   for k in range(1, 6)},
            })
            frame["token_text"] = "t" + frame["token_id"].astype(str)
            frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["js64"] = out["js"].astype(np.float64)  # reference math in float64 of the stored values
    return out


@pytest.fixture(scope="module")
def tokens() -> pd.DataFrame:
    return make_tokens()


@pytest.fixture(scope="module")
def data_root(tokens, tmp_path_factory):
    """The hand-made table under data/tokens, hive-partitioned and marked like the scorer's."""
    root = tmp_path_factory.mktemp("data")
    table = pa.Table.from_pandas(tokens.drop(columns="js64"), preserve_index=False)
    ds.write_dataset(table, root / "tokens", format="parquet", partitioning=["pair", "generator"],
                     partitioning_flavor="hive")
    (root / "tokens" / MARKER).write_text("ok\n")
    return root


@pytest.fixture(scope="module")
def con(data_root):
    return connect(data_root)


def run(con, name: str) -> pd.DataFrame:
    out = run_sql(con, name, PARAMS).to_pandas()
    keys = KEYS[name]
    assert not out[keys].isna().any().any(), f"{name}: null key"
    assert not out.duplicated(keys).any(), f"{name}: duplicate key"
    return out


def check(got: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    """Same key set, and every expected column close to the query's."""
    merged = got.merge(expected, on=keys, how="outer", suffixes=("", "_ref"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][keys]
    for col in expected.columns.difference(keys):
        np.testing.assert_allclose(merged[col].astype(float), merged[f"{col}_ref"].astype(float),
                                   rtol=1e-5, atol=1e-7, err_msg=col)


def per_group(df: pd.DataFrame, fn, keys=("pair", "generator")) -> pd.DataFrame:
    rows = []
    for key, g in df.groupby(list(keys)):
        for row in fn(g):
            rows.append(dict(zip(keys, key, strict=True)) | row)
    return pd.DataFrame(rows)


def test_every_query_has_keys_and_a_test():
    assert set(analysis_queries()) | {"stg_pairs"} == set(KEYS)
    assert not any("cross" in name for name in analysis_queries())  # run by the cross stage


def test_params_bound_by_name():
    assert query_params("select $a, $b -- $c in a comment\nfrom t") == {"a", "b"}
    assert bind_params("select $a", {"a": 1, "z": 2}) == {"a": 1}
    with pytest.raises(ValueError, match="needs parameter"):
        bind_params("select $a", {})
    with pytest.raises(ValueError, match="no SQL file"):
        load_sql("no_such_query")


def test_stg_pairs(con):
    got = con.sql("select * from stg_pairs").df()
    assert got.set_index("pair")["tuned_model"].to_dict() == {
        "base__rl": "rl", "base__sft": "sft", "base__rft": "rft",
        "base__rl_step_10": "rl_step_10", "base__rl_step_20": "rl_step_20"}
    steps = got.set_index("pair")["rl_step"]
    assert steps["base__rl_step_20"] == 20 and pd.isna(steps["base__rl"])


def test_sparsity(con, tokens):
    expected = per_group(tokens, lambda g: [
        {"threshold": t, "n_positions": len(g), "share_above": (g.js64 > t).mean()}
        for t in PARAMS["thresholds"]])
    check(run(con, "agg_sparsity"), expected, KEYS["agg_sparsity"])


def test_js_quantiles(con, tokens):
    expected = per_group(tokens, lambda g: [
        {"quantile": q, "js_value": np.quantile(g.js64, q), "mean_js": g.js64.mean()}
        for q in PARAMS["quantiles"]])
    check(run(con, "agg_js_quantiles"), expected, KEYS["agg_js_quantiles"])


def test_js_histogram(con, tokens):
    bpd = PARAMS["hist_bins_per_decade"]
    t = tokens.assign(
        bin_index=np.floor(np.log10(np.maximum(tokens.js64, PARAMS["hist_min"])) * bpd))
    expected = per_group(t, lambda g: [
        {"bin_index": b, "n_positions": len(x), "share_positions": len(x) / len(g),
         "js_lo": 10 ** (b / bpd)} for b, x in g.groupby("bin_index")])
    got = run(con, "agg_js_histogram")
    check(got, expected, KEYS["agg_js_histogram"])
    assert (got.js_lo < got.js_hi).all()


def divergence_stats(x: pd.DataFrame) -> dict:
    return {"n_positions": len(x), "mean_js": x.js64.mean(), "median_js": x.js64.median(),
            "share_divergent": (x.js64 > TAU).mean()}


def test_js_by_entropy_fixed(con, tokens):
    edges = np.array(PARAMS["entropy_edges"])
    t = tokens.assign(bin_index=np.clip(
        np.searchsorted(edges, tokens.entropy_base.astype(float), side="right"), 1, len(edges)))
    expected = per_group(t, lambda g: [
        {"bin_index": b, "share_positions": len(x) / len(g), **divergence_stats(x)}
        for b, x in g.groupby("bin_index")])
    check(run(con, "agg_js_by_entropy_fixed"), expected, KEYS["agg_js_by_entropy_fixed"])


def test_js_by_entropy_quantile(con, tokens):
    n = PARAMS["n_entropy_bins"]

    def bins(g):
        ent = g.entropy_base.astype(float)
        edges = np.quantile(ent, [k / n for k in range(1, n)])
        for b, x in g.groupby(np.searchsorted(edges, ent, side="left") + 1):
            yield {"bin_index": b, "entropy_lo": x.entropy_base.min(),
                   "entropy_hi": x.entropy_base.max(), **divergence_stats(x)}
    check(run(con, "agg_js_by_entropy_quantile"), per_group(tokens, bins),
          KEYS["agg_js_by_entropy_quantile"])


def test_entropy_by_divergence(con, tokens):
    def split(g):
        cut = np.quantile(g.entropy_base.astype(float), PARAMS["high_entropy_quantile"])
        for is_div, x in g.groupby(g.js64 > TAU):
            yield {"is_divergent": is_div, "n_positions": len(x),
                   "mean_entropy_base": x.entropy_base.astype(float).mean(),
                   "share_high_entropy": (x.entropy_base.astype(float) > cut).mean()}
    check(run(con, "agg_entropy_by_divergence"), per_group(tokens, split),
          KEYS["agg_entropy_by_divergence"])


def test_js_by_position(con, tokens):
    n = PARAMS["n_position_bins"]
    t = tokens.assign(bin_index=np.minimum(tokens.position * n // tokens.n_tokens, n - 1))
    expected = per_group(t, lambda g: [
        {"bin_index": b, "position_lo": b / n, **divergence_stats(x)}
        for b, x in g.groupby("bin_index")])
    check(run(con, "agg_js_by_position"), expected, KEYS["agg_js_by_position"])


def test_js_by_position_edges(con, tokens):
    n = PARAMS["n_edge_positions"]
    start = tokens[tokens.position < n].assign(anchor="start", token_offset=tokens.position)
    back = tokens.n_tokens - 1 - tokens.position
    end = tokens[back < n].assign(anchor="end", token_offset=back)
    expected = per_group(pd.concat([start, end]), lambda g: [divergence_stats(g)],
                         keys=KEYS["agg_js_by_position_edges"])
    check(run(con, "agg_js_by_position_edges"), expected, KEYS["agg_js_by_position_edges"])


def subsets(df: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df.assign(subset="all"), df[df.js64 > TAU].assign(subset="divergent")])


def test_topk_overlap(con, tokens):
    expected = per_group(subsets(tokens), lambda g: [
        {"k": k, "mean_overlap": g[f"topk_overlap_{k}"].astype(float).mean(),
         "n_positions": len(g)} for k in range(1, 6)], keys=("pair", "generator", "subset"))
    check(run(con, "agg_topk_overlap"), expected, KEYS["agg_topk_overlap"])


def test_reallocation(con, tokens):
    expected = per_group(subsets(tokens), lambda g: [{
        "n_positions": len(g),
        "share_top1_is_base_top1": (g.rank_in_base_of_top1_tuned == 1).mean(),
        "share_top1_in_base_top3": (g.rank_in_base_of_top1_tuned <= 3).mean(),
        "share_base_prob_below_low": (g.prob_base_of_top1_tuned.astype(float)
                                      < PARAMS["low_prob"]).mean(),
        "median_rank_in_base": g.rank_in_base_of_top1_tuned.median(),
        "share_base_top1_in_tuned_top3": (g.rank_in_tuned_of_top1_base <= 3).mean(),
        "mean_rank_in_tuned": g.rank_in_tuned_of_top1_base.mean(),
    }], keys=("pair", "generator", "subset"))
    check(run(con, "agg_reallocation"), expected, KEYS["agg_reallocation"])


def test_rank_histogram(con, tokens):
    m = PARAMS["max_rank"]
    t = subsets(tokens)
    t = t.assign(rank_bucket=np.minimum(t.rank_in_base_of_top1_tuned, m + 1))
    expected = per_group(t, lambda g: [
        {"rank_bucket": b, "n_positions": len(x), "share_positions": len(x) / len(g)}
        for b, x in g.groupby("rank_bucket")], keys=("pair", "generator", "subset"))
    got = run(con, "agg_rank_histogram")
    check(got, expected, KEYS["agg_rank_histogram"])
    assert set(got.loc[got.rank_bucket == m + 1, "rank_label"]) == {f">{m}"}


def test_token_identity(con, tokens):
    def top(g):
        s = g.groupby("token_id").agg(n_occurrences=("js64", "size"), mean_js=("js64", "mean"),
                                      share_divergent=("js64", lambda v: (v > TAU).mean()))
        s = s[s.n_occurrences >= PARAMS["min_token_count"]].reset_index()
        s["rank_by_mean_js"] = s.sort_values(["mean_js", "token_id"], ascending=[False, True]
                                             ).index.argsort() + 1
        s["rank_by_count"] = s.sort_values(["n_occurrences", "token_id"],
                                           ascending=[False, True]).index.argsort() + 1
        keep = (s.rank_by_mean_js <= PARAMS["top_tokens"]) | (s.rank_by_count
                                                               <= PARAMS["top_tokens"])
        return s[keep].to_dict("records")
    check(run(con, "agg_token_identity"), per_group(tokens, top), KEYS["agg_token_identity"])


def test_checkpoint_evolution(con, tokens):
    keys = ["prompt_id", "sample_id", "position"]
    base = tokens[tokens.generator == "base"]
    final = base[base.pair == "base__rl"].set_index(keys).js64 > TAU
    rows = []
    for pair in ("base__rl_step_10", "base__rl_step_20", "base__rl"):
        div = base[base.pair == pair].set_index(keys).js64 > TAU
        a, b = div.reindex(final.index), final
        js = base[base.pair == pair].js64
        rows.append({"pair": pair, "n_positions": len(js), "js_p50": js.quantile(0.5),
                     "js_p95": js.quantile(0.95), "js_p99": js.quantile(0.99),
                     "jaccard_with_final": (a & b).sum() / (a | b).sum()})
    got = run(con, "agg_checkpoint_evolution")
    check(got, pd.DataFrame(rows), ["pair"])
    assert got.loc[got.pair == "base__rl", "jaccard_with_final"].item() == 1.0
    assert got.rl_step.tolist()[:2] == [10, 20] and got.is_final.tolist() == [False, False, True]


def test_family_comparison(con, tokens):
    def summary(g):
        js = g.js64.to_numpy()
        top = js[js >= np.quantile(js, 0.9)].sum() / js.sum()
        has_div = g.groupby(["prompt_id", "sample_id"]).js64.max() > TAU
        yield {"n_positions": len(g), "js_p99": np.quantile(js, 0.99),
               "share_above_001": (js > 0.01).mean(), "top_decile_js_mass": top,
               "n_responses": len(has_div), "share_responses_with_divergent": has_div.mean(),
               "mean_js_first_bin": g.js64[g.position * 4 // g.n_tokens == 0].mean()}
    family = tokens[tokens.pair.isin(["base__rl", "base__sft", "base__rft"])]
    check(run(con, "agg_family_comparison"), per_group(family, summary),
          KEYS["agg_family_comparison"])


def gini_numpy(x: np.ndarray) -> float:
    """Gini coefficient: mean absolute difference over all pairs / (2 x mean)."""
    x = np.asarray(x, dtype=np.float64)
    return np.abs(x[:, None] - x[None, :]).mean() / (2 * x.mean())


def test_js_concentration(con, tokens):
    def summary(g):
        js = np.sort(g.js64.to_numpy())[::-1]
        mass = np.cumsum(js) / js.sum()
        for q in CFG.mass_shares:
            k = int(np.argmax(mass >= q - 1e-12)) + 1
            yield {"mass_share": q, "gini": gini_numpy(js), "n_positions": len(js),
                   "share_positions": k / len(js), "total_js": js.sum()}
    kept = tokens[~tokens.tuned_kind.eq("checkpoint")]  # checkpoints: their own analysis
    check(run(con, "agg_js_concentration"), per_group(kept, summary),
          KEYS["agg_js_concentration"])


def test_js_lorenz(con, tokens):
    def curve(g):
        js = np.sort(g.js64.to_numpy())
        n = len(js)
        for k in range(CFG.lorenz_points + 1):
            m = k * n // CFG.lorenz_points
            yield {"population_share": m / n, "mass_share": js[:m].sum() / js.sum()}
    got = run(con, "agg_js_lorenz")
    check(got, per_group(tokens[~tokens.tuned_kind.eq("checkpoint")], curve),
          KEYS["agg_js_lorenz"])
    # the area between the diagonal and the curve's vertices is half the Gini (trapezoids, on
    # the fine curve of one group with a point per position)
    g = tokens[(tokens.pair == "base__rl") & (tokens.generator == "tuned")]
    js = np.sort(g.js64.to_numpy())
    x = np.arange(len(js) + 1) / len(js)
    y = np.concatenate([[0.0], np.cumsum(js) / js.sum()])
    area = ((y[1:] + y[:-1]) / 2 * np.diff(x)).sum()
    assert 1 - 2 * area == pytest.approx(gini_numpy(js), abs=1e-12)


def test_concentration_on_known_inputs(tmp_path):
    import duckdb

    groups = {  # js values -> (gini, positions holding 50 / 80 / 90% of the mass)
        "even": ([0.2, 0.2, 0.2, 0.2], 0.0, (2 / 4, 4 / 4, 4 / 4)),
        "one": ([0.0, 0.0, 0.0, 0.4], 0.75, (1 / 4, 1 / 4, 1 / 4)),
        "spread": ([0.5, 0.3, 0.1, 0.1], None, (1 / 4, 2 / 4, 3 / 4)),
    }
    df = pd.DataFrame([{"pair": name, "generator": "tuned", "js": v}
                       for name, (values, _, _) in groups.items() for v in values])
    con = duckdb.connect()
    con.register("tokens", df)
    con.register("stg_pairs", pd.DataFrame({"pair": list(groups), "tuned_kind": "rl"}))
    con.sql(staging_sql({"tokens"})["stg_pair_js"])  # over the stg_pairs registered above
    got = run_sql(con, "agg_js_concentration", PARAMS).to_pandas()
    for name, (values, gini, shares) in groups.items():
        rows = got[got.pair == name].sort_values("mass_share")
        assert rows.gini.iloc[0] == pytest.approx(gini_numpy(values) if gini is None else gini)
        assert rows.share_positions.tolist() == pytest.approx(list(shares))
    lorenz = run_sql(con, "agg_js_lorenz", {"lorenz_points": 4}).to_pandas()
    one = lorenz[lorenz.pair == "one"]
    assert one.mass_share.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]  # all mass in the last position
    even = lorenz[lorenz.pair == "even"]
    assert even.mass_share.tolist() == pytest.approx(even.population_share.tolist())


def test_response_divergence(con, tokens):
    def responses(g):
        for (prompt, sample), r in g.groupby(["prompt_id", "sample_id"]):
            first = r[r.position < CFG.first_tokens]
            yield {"prompt_id": prompt, "sample_id": sample, "reward": r.reward.iloc[0],
                   "n_positions": len(r), "max_js": r.js64.max(), "mean_js": r.js64.mean(),
                   "mean_js_first": first.js64.mean()}
    kept = tokens[~tokens.tuned_kind.eq("checkpoint")]
    check(run(con, "agg_response_divergence"), per_group(kept, responses),
          KEYS["agg_response_divergence"])


def test_truncation(con, tokens):
    expected = per_group(tokens, lambda g: [{
        "mae": (g.js_top_p.astype(float) - g.js64).abs().mean(),
        "mean_error": (g.js_top_p.astype(float) - g.js64).mean(),
        "pearson": np.corrcoef(g.js64, g.js_top_p.astype(float))[0, 1],
        "spearman": stats.spearmanr(g.js64, g.js_top_p.astype(float)).statistic,
        "share_divergent_flipped": ((g.js64 > TAU) != (g.js_top_p.astype(float) > TAU)).mean(),
    }])
    check(run(con, "agg_truncation"), expected, KEYS["agg_truncation"])


def test_correctness(con, tokens):
    def split(g):
        for is_correct, x in g.groupby(g.reward == 1):
            per_response = x.groupby(["prompt_id", "sample_id"]).js64
            yield {"is_correct": is_correct, **divergence_stats(x),
                   "js_p95": x.js64.quantile(0.95), "n_responses": per_response.ngroups,
                   "mean_divergent_per_response": per_response.apply(
                       lambda v: (v > TAU).sum()).mean()}
    check(run(con, "agg_correctness"), per_group(tokens, split), KEYS["agg_correctness"])


def test_roles(con, tokens):
    labelled = tokens[tokens.role.notna()]
    def by_role(g):
        n_div = (g.js64 > TAU).sum()
        for role, x in g.groupby("role"):
            yield {"role": role, "share_positions": len(x) / len(g), **divergence_stats(x),
                   "share_of_divergent": (x.js64 > TAU).sum() / n_div,
                   "is_decisive": role in PARAMS["decisive_roles"]}
    check(run(con, "agg_roles"), per_group(labelled, by_role), KEYS["agg_roles"])


def test_role_detection(con, tokens):
    labelled = tokens[tokens.role.notna()]
    def sweep(g):
        decisive = g.role.isin(PARAMS["decisive_roles"])
        for t in PARAMS["thresholds"]:
            flagged = g.js64 > t
            tp = (flagged & decisive).sum()
            p, r = tp / flagged.sum(), tp / decisive.sum()
            yield {"threshold": t, "n_flagged": flagged.sum(), "precision": p, "recall": r,
                   "f1": 2 * p * r / (p + r), "base_rate": decisive.mean()}
    check(run(con, "agg_role_detection"), per_group(labelled, sweep), KEYS["agg_role_detection"])


def test_analyze_tasks_write_results_plots_and_metrics(data_root, tmp_path, tokens):
    """The stage's two tasks, as flows/analyze.py calls them (Prefect engine bypassed)."""
    from tasks.analyze import run_analyses_task, write_metrics_task

    layout = Layout(data_root)
    out = layout.analysis_dir
    rows = run_analyses_task.fn(layout, CFG)
    assert write_metrics_task.fn(layout, CFG) == len(PAIRS)
    assert set(rows) == {*analysis_queries(), "failure_prediction"} and (out / MARKER).exists()
    assert pq.read_table(out / "agg_sparsity.parquet").num_rows == rows["agg_sparsity"]
    assert layout.plot("analysis_sparsity").exists()
    metrics = json.loads(layout.metrics("analysis").read_text())
    assert metrics["rl_pair"] == CFG.final_pair  # what the findings read
    g = tokens[(tokens.pair == "base__rl") & (tokens.generator == "base")]
    got = metrics["pairs"]["base__rl"]["base"]
    assert got["share_js_above_0.1"] == pytest.approx((g.js64 > 0.1).mean(), abs=1e-6)
    assert got["truncation_spearman"] == pytest.approx(
        stats.spearmanr(g.js64, g.js_top_p.astype(float)).statistic, abs=1e-5)
    assert metrics["checkpoints"]["base__rl"]["jaccard_with_final"] == 1.0
    assert got["js_gini"] == pytest.approx(gini_numpy(g.js64.to_numpy()), abs=1e-6)
    assert 0 < got["share_positions_holding_0.5_js"] <= got["share_positions_holding_0.9_js"]
    per_response = g.groupby(["prompt_id", "sample_id"]).agg(r=("reward", "first"),
                                                             s=("js64", "max"))
    failed, ok = per_response.s[per_response.r == 0], per_response.s[per_response.r == 1]
    auc = stats.mannwhitneyu(failed, ok).statistic / (len(failed) * len(ok))
    assert got["failure_auroc_max_js"] == pytest.approx(auc, abs=1e-6)
    assert got["failure_auroc_low_max_js"] <= got["failure_auroc_max_js"] <= got[
        "failure_auroc_high_max_js"]
    # token identity: occurrence-weighted divergent share of the top tokens by mean JS: the
    # top 5, or as many leading ranks as the identity table keeps (top_tokens, or by count)
    per_token = g.groupby("token_id").js64.agg(["size", "mean", lambda v: (v > TAU).sum()])
    per_token.columns = ["n", "mean_js", "n_divergent"]
    per_token = per_token[per_token.n >= PARAMS["min_token_count"]].reset_index()
    by_js = per_token.sort_values(["mean_js", "token_id"], ascending=[False, True])
    by_count = per_token.sort_values(["n", "token_id"], ascending=[False, True])
    kept = set(by_js.token_id[: PARAMS["top_tokens"]]) | set(by_count.token_id[
        : PARAMS["top_tokens"]])
    leading = next(k for k in range(6) if k == 5 or by_js.token_id.iloc[k] not in kept)
    best = by_js.head(leading)
    assert 1 <= leading < 5  # this table keeps fewer than 5 leading ranks: the truncated case
    assert got["identity_top5_share_divergent"] == pytest.approx(
        best.n_divergent.sum() / best.n.sum(), abs=1e-6)
    with pytest.raises(ValueError, match="score stage"):
        run_analyses_task.fn(Layout(tmp_path / "empty"), CFG)
