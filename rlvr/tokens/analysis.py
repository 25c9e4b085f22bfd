"""The study's analyses: run the `sql/agg_*` files on the warehouse and save what they find.

Each query's result goes to `data/analysis/<name>.parquet`; the curves the report and DVC plot go to
CSV files; `headline_metrics` picks the few numbers worth tracking with `dvc metrics diff`.
Queries over tables of other stages (cross-sampling, weighted training) are run by those stages.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rlvr.config import require
from rlvr.layout import Layout
from rlvr.progress import Progress
from rlvr.store.atomic import atomic_dir, atomic_file, sweep_debris, write_json
from rlvr.tokens.prediction import failure_prediction
from rlvr.warehouse.sql import SQL_DIR, list_queries, run_sql
from rlvr.warehouse.views import complete_files, connect


@dataclass(frozen=True)
class AnalyzeParams:
    """`analyze`: the study's analyses over the token table (sql/agg_*.sql parameters)."""

    thresholds: list[float] = field(
        default_factory=lambda: [0.001, 0.01, 0.05, 0.1, 0.2, 0.3])  # js sparsity sweep
    tau: float = 0.1  # js above this is "divergent" (the study's reallocation cut)
    quantiles: list[float] = field(default_factory=lambda: [0.5, 0.9, 0.95, 0.99])
    hist_min: float = 1e-6  # js histogram: lowest log bin edge (zeros land in the lowest bin)
    hist_bins_per_decade: int = 4
    entropy_edges: list[float] = field(
        default_factory=lambda: [0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.0, 3.0])  # fixed bins, nats
    n_entropy_bins: int = 10  # equal-count entropy bins
    high_entropy_quantile: float = 0.8  # "high entropy" = top 20% (forking-token convention)
    n_position_bins: int = 10  # normalised position bins
    n_edge_positions: int = 8  # first/last N absolute positions
    low_prob: float = 0.01  # "base probability below" cut for the tuned top-1 token
    max_rank: int = 10  # rank histogram: ranks above this share one bucket
    min_token_count: int = 20  # token identity: occurrences a token needs to be ranked
    top_tokens: int = 20
    final_pair: str = "base__rl"  # checkpoint evolution compares every checkpoint to this pair
    decisive_roles: list[str] = field(
        default_factory=lambda: ["method", "verify", "intermediate", "check", "format",
                                 "final_answer"])  # the grammar's class, not a measurement
    exclude_roles: list[str] = field(default_factory=list)  # rows left out of every analysis
    # concentration: the smallest share of positions holding each share of the js mass
    mass_shares: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.9])
    lorenz_points: int = 50  # Lorenz curve: evenly spaced population shares
    first_tokens: int = 8  # failure prediction: the "mean js over the first N positions" summary
    n_bootstrap: int = 1000  # failure prediction: prompt-bootstrap replicates of the AUROC
    alpha: float = 0.05  # two-sided interval level
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        ln2 = 0.6931471805599453
        require(bool(self.thresholds) and all(0 < t < ln2 for t in self.thresholds),
                "thresholds", f"need a non-empty list in (0, ln 2), got {self.thresholds}",
                "list js cuts such as [0.001, 0.01, 0.1]")
        require(0 < self.tau < ln2 and any(abs(t - self.tau) < 1e-12 for t in self.thresholds),
                "tau", f"{self.tau} must be in (0, ln 2) and one of analyze.thresholds",
                "add tau to the thresholds sweep")
        require(all(0 <= q <= 1 for q in [*self.quantiles, self.high_entropy_quantile]),
                "quantiles", "quantiles must lie in [0, 1]",
                "use e.g. [0.5, 0.9, 0.95, 0.99] and 0.8")
        edges = self.entropy_edges
        require(len(edges) >= 2 and all(a < b for a, b in zip(edges, edges[1:], strict=False)),
                "entropy_edges", f"need >= 2 increasing edges, got {edges}",
                "use e.g. [0.0, 0.1, 0.5, 1.0, 2.0]")
        for key in ("hist_bins_per_decade", "n_entropy_bins", "n_position_bins",
                    "n_edge_positions", "max_rank", "min_token_count", "top_tokens"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use e.g. 10")
        require(0 < self.hist_min < ln2 and 0 < self.low_prob < 1, "hist_min",
                "must lie in (0, ln 2) and (0, 1)", "use e.g. 1e-6 and 0.01")
        require("__" in self.final_pair, "final_pair",
                f"{self.final_pair!r} is not `<base>__<tuned>`", "use e.g. base__rl")
        require(bool(self.decisive_roles), "decisive_roles", "is empty",
                "list the roles that decide correctness")
        require(bool(self.mass_shares) and all(0 < q <= 1 for q in self.mass_shares),
                "mass_shares", f"need shares in (0, 1], got {self.mass_shares}",
                "use e.g. [0.5, 0.8, 0.9]")
        for key in ("lorenz_points", "first_tokens", "n_bootstrap"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use e.g. 8")
        require(0 < self.alpha < 1, "alpha", "must be in (0, 1)", "use 0.05")

    def sql_params(self) -> dict[str, object]:
        """The `$parameters` of the sql/agg_* files."""
        params = asdict(self)
        del params["exclude_roles"]  # applied to the `tokens` view itself (`connect`)
        return params


# result name -> plot file stem under the plots directory (the curves)
PLOTS = {  # query -> plot CSV (rlvr.layout.ANALYSIS_PLOTS)
    "agg_sparsity": "analysis_sparsity",
    "agg_js_histogram": "analysis_js_histogram",
    "agg_js_by_entropy_quantile": "analysis_js_by_entropy",
    "agg_js_by_position": "analysis_js_by_position",
    "agg_js_by_position_edges": "analysis_js_by_position_edges",
    "agg_topk_overlap": "analysis_topk_overlap",
    "agg_rank_histogram": "analysis_rank_histogram",
    "agg_checkpoint_evolution": "analysis_checkpoint_evolution",
    "agg_role_detection": "analysis_role_detection",
}


FAILURE = "failure_prediction"  # data/analysis/<name>.parquet: `rlvr.tokens.prediction`


def analysis_queries(sql_dir: str | Path = SQL_DIR) -> list[str]:
    """The `agg_*` queries this stage runs: those in `sql/analyze/`."""
    return list_queries("agg_", sql_dir, stage="analyze")


def write_table(table: pa.Table, path: str | Path) -> None:
    """Write `table` to parquet (or CSV for a `.csv` path) atomically."""
    with atomic_file(path) as tmp:
        if Path(path).suffix == ".csv":
            pacsv.write_csv(table, tmp)
        else:
            pq.write_table(table, tmp)


def check_tokens_complete(layout: Layout) -> None:
    """The analyses' one input: a complete token table."""
    if not complete_files(layout.tokens_dir):
        raise ValueError(f"no complete token table under {layout.tokens_dir}; "
                         "run the score stage first (`dvc repro score`)")


def run_analyses(
    layout: Layout, cfg: AnalyzeParams, sql_dir: str | Path = SQL_DIR, progress: bool = False,
) -> dict[str, pa.Table]:
    """Run every analysis over the layout's tables; write results and plot CSVs.

    Returns the results by query name (they are small: aggregates, not token rows).
    """
    check_tokens_complete(layout)
    con = connect(layout.root, sql_dir, exclude_roles=cfg.exclude_roles)
    params = cfg.sql_params()
    sweep_debris(*layout.outputs("analyze"))
    results = {}
    # one atomic directory: a rerun never mixes old and new results, nor keeps renamed ones
    with atomic_dir(layout.analysis_dir) as tmp:
        for name in Progress(analysis_queries(sql_dir), "analyses", enabled=progress):
            results[name] = run_sql(con, name, params, sql_dir)
            write_table(results[name], tmp / f"{name}.parquet")
        # the AUROC's bootstrap needs one sort per replicate block: numpy, not SQL
        results[FAILURE] = failure_prediction(results["agg_response_divergence"],
                                              cfg.n_bootstrap, cfg.alpha, cfg.bootstrap_seed)
        write_table(results[FAILURE], tmp / f"{FAILURE}.parquet")
    for name, stem in PLOTS.items():
        write_table(results[name], layout.plot(stem))
    return results


def _clean(value: Any) -> Any:
    """JSON-safe scalar: NaN and infinities become null, floats are rounded for diffs."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    return value


def _rows(table: pa.Table, **where: Any) -> list[dict[str, Any]]:
    return [r for r in table.to_pylist() if all(r[k] == v for k, v in where.items())]


def headline_metrics(results: dict[str, pa.Table], tau: float,
                     rl_pair: str = "base__rl") -> dict[str, Any]:
    """The study's headline numbers per pair and generator, plus the checkpoint trend."""
    pairs: dict[str, dict[str, dict[str, Any]]] = {}

    def put(row: dict[str, Any], key: str, value: Any) -> None:
        pairs.setdefault(row["pair"], {}).setdefault(row["generator"], {})[key] = _clean(value)

    for r in results["agg_sparsity"].to_pylist():
        put(r, f"share_js_above_{r['threshold']:g}", r["share_above"])
    for r in _rows(results["agg_js_quantiles"], quantile=0.99):
        put(r, "js_p99", r["js_value"])
        put(r, "mean_js", r["mean_js"])
    for r in results["agg_reallocation"].to_pylist():
        for key in ("share_top1_is_base_top1", "share_top1_in_base_top3",
                    "share_base_prob_below_low", "share_base_top1_in_tuned_top3"):
            put(r, f"{r['subset']}_{key}", r[key])
    for r in _rows(results["agg_topk_overlap"], subset="divergent"):
        put(r, f"divergent_topk_overlap_{r['k']}", r["mean_overlap"])
    for r in results["agg_truncation"].to_pylist():
        put(r, "truncation_mae", r["mae"])
        put(r, "truncation_spearman", r["spearman"])
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results["agg_js_by_position"].to_pylist():
        groups.setdefault((r["pair"], r["generator"]), []).append(r)
    for rows in groups.values():
        rows.sort(key=lambda x: x["bin_index"])
        middle = rows[1:-1]
        put(rows[0], "mean_js_first_bin", rows[0]["mean_js"])
        put(rows[0], "mean_js_last_bin", rows[-1]["mean_js"])
        if middle:
            weight = sum(x["n_positions"] for x in middle)
            put(rows[0], "mean_js_middle_bins",
                sum(x["mean_js"] * x["n_positions"] for x in middle) / weight)
    for r in results["agg_family_comparison"].to_pylist():
        put(r, "top_decile_js_mass", r["top_decile_js_mass"])
    for r in results["agg_role_detection"].to_pylist():
        if math.isclose(r["threshold"], tau):
            put(r, "decisive_precision_at_tau", r["precision"])
            put(r, "decisive_recall_at_tau", r["recall"])
    for r in results["agg_js_concentration"].to_pylist():
        put(r, "js_gini", r["gini"])
        put(r, f"share_positions_holding_{r['mass_share']:g}_js", r["share_positions"])
    for r in results[FAILURE].to_pylist():
        for key in ("auroc", "auroc_low", "auroc_high"):
            put(r, f"failure_{key}_{r['summary']}", r[key])
    for r in results["agg_entropy_by_divergence"].to_pylist():
        kind = "divergent" if r["is_divergent"] else "other"
        put(r, f"{kind}_share_high_entropy", r["share_high_entropy"])
    # token identity: how often the tokens of highest mean JS are divergent (targeted shifts);
    # the table holds ranks 1..top_tokens (and others by count), so: the top min(5, top_tokens)
    for r in _rows(results["agg_token_identity"], rank_by_mean_js=1):
        ranked = {x["rank_by_mean_js"]: x for x in _rows(
            results["agg_token_identity"], pair=r["pair"], generator=r["generator"])}
        top = [ranked[k] for k in range(1, 6) if all(j in ranked for j in range(1, k + 1))]
        put(r, "identity_top5_share_divergent",
            sum(x["share_divergent"] * x["n_occurrences"] for x in top)
            / sum(x["n_occurrences"] for x in top))
    checkpoints = {
        r["pair"]: {k: _clean(r[k]) for k in ("rl_step", "js_p50", "js_p95", "js_p99",
                                               "share_divergent", "jaccard_with_final")}
        for r in results["agg_checkpoint_evolution"].to_pylist()
    }
    # which pairs the study's findings read: its RL model's (`analyze.final_pair`) and the
    # first SFT control's, when it has one
    sft = [r["pair"] for r in results["agg_family_comparison"].to_pylist()
           if r["tuned_kind"] == "sft"]
    return {"tau": tau, "rl_pair": rl_pair, "sft_pair": sft[0] if sft else None,
            "pairs": pairs, "checkpoints": checkpoints}


def write_headline_metrics(layout: Layout, tau: float, rl_pair: str = "base__rl") -> dict:
    """Read the saved results and write `headline_metrics` as the `analysis` metrics."""
    results = {p.stem: pq.read_table(p)
               for p in sorted(layout.analysis_dir.glob("agg_*.parquet"))}
    results[FAILURE] = pq.read_table(layout.analysis_dir / f"{FAILURE}.parquet")
    metrics = headline_metrics(results, tau, rl_pair)
    write_json(metrics, layout.metrics("analysis"))
    return metrics
