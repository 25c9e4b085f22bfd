"""Validation: the stratified, sequential decisive design against the exhaustive reference.

    nice -n 15 python benchmarks/bench_decisive.py [--seeds 0 1 2 3 4] [--reference DIR]

Run from the repository root after the toy pipeline's `decisive` stage ran with the default
(exhaustive) params: its part files (data/decisive/positions, or `--reference`) are the
reference, K = 32 rollouts at every position of the same responses. For each seed the
stratified design (params.yaml `decisive` with `design: stratified`, seed varied) measures
both generators' responses into a temporary folder; both designs go through the same
estimator (`rlvr.decisive.estimates`). Prints, per generator: the rollouts and rollout tokens
of each design and their ratio (the reference's cost comes from data/metrics/decisive.json),
the pivotal share and each signal's AUC at every cut with the stratified 95% intervals, and
whether each interval covers the exhaustive value; then the coverage over all seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from rlvr.config import from_section, load_params
from rlvr.decisive.estimates import detection
from rlvr.decisive.positions import DecisiveJob, DecisiveParams, measure_generator, plan_decisive
from rlvr.generation.samples import SampleParams
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams

TOKEN_COLUMNS = ["prompt_id", "sample_id", "position", "js", "entropy_base", "delta_logprob"]


def frame(part: Path, tokens: str, generator: str) -> pd.DataFrame:
    """A generator's population frame (as sql/decisive/int_decisive_frame gives it)."""
    rows = pq.read_table(part).to_pandas()
    signals = pq.read_table(tokens, columns=TOKEN_COLUMNS).to_pandas()
    out = rows.merge(signals, on=["prompt_id", "sample_id", "position"])
    assert len(out) == len(rows), f"{part}: positions without token rows"
    return out.assign(generator=generator, abs_delta=out.delta_logprob.abs(),
                      is_measured=out.status != "unsampled")


def estimates(f: pd.DataFrame, cfg: DecisiveParams) -> pd.DataFrame:
    return detection(f, cfg.pivot_cuts, cfg.flag_shares[:1], cfg.n_bootstrap, cfg.alpha,
                     cfg.seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--reference", default="data/decisive/positions")
    ap.add_argument("--out", default="", help="write the per-seed rows as JSON here")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="stratified-design knobs other than params.yaml's (e.g. max_rollouts=16)")
    args = ap.parse_args()
    params = load_params()
    base_cfg = from_section(DecisiveParams, params, "decisive")
    assert base_cfg.design == "exhaustive", "the reference is the exhaustive design"
    grader = from_section(SampleParams, params, "sample").grader
    layout = Layout("data")
    jobs = plan_decisive(base_cfg, grader, from_section(ModelsParams, params, "models"), layout)
    overrides = {k: type(getattr(base_cfg, k))(v) for k, v in (x.split("=") for x in args.set)}
    ref_cost = {c["model"]: c for c in json.loads(layout.metrics("decisive").read_text())["cost"]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            cfg = dataclasses.replace(base_cfg, design="stratified", seed=seed, **overrides)
            for job in jobs:
                name = job.entry.name
                ref = Path(args.reference) / f"model={name}" / "part-00000.parquet"
                out = Path(tmp) / f"{seed}-{name}.parquet"
                start = time.perf_counter()
                run = measure_generator(DecisiveJob(job.generator, job.entry, job.samples,
                                                    job.tokens, str(out)), cfg, grader)
                seconds = time.perf_counter() - start
                exact = estimates(frame(ref, job.tokens, job.generator), base_cfg)
                strat = estimates(frame(out, job.tokens, job.generator), cfg)
                both = strat.merge(exact, on=["generator", "signal", "pivot_cut"],
                                   suffixes=("", "_exhaustive"))
                cost = ref_cost.get(name, {})
                status = pq.read_table(out, columns=["status"]).column(0).to_pandas()
                stops = status[~status.isin(["bound", "unsampled"])].value_counts().to_dict()
                for r in both.itertuples():
                    rows.append({
                        "seed": seed, "generator": job.generator, "signal": r.signal,
                        "pivot_cut": r.pivot_cut, "positions": r.n_positions,
                        "measured": r.n_measured, "rollouts": run["rollouts"],
                        "rollouts_asked": run["rollouts_asked"],
                        "rollout_tokens": run["rollout_tokens"], "seconds": seconds,
                        "stops": stops,
                        "ref_rollouts": cost.get("rollouts"),
                        "ref_rollout_tokens": cost.get("rollout_tokens"),
                        "share": r.base_rate, "share_low": r.base_rate_low,
                        "share_high": r.base_rate_high, "share_exhaustive": r.base_rate_exhaustive,
                        "share_exhaustive_low": r.base_rate_low_exhaustive,
                        "share_exhaustive_high": r.base_rate_high_exhaustive,
                        "auc": r.auc, "auc_low": r.auc_low, "auc_high": r.auc_high,
                        "auc_exhaustive": r.auc_exhaustive,
                        "auc_exhaustive_low": r.auc_low_exhaustive,
                        "auc_exhaustive_high": r.auc_high_exhaustive,
                    })
                report(pd.DataFrame([x for x in rows if x["seed"] == seed
                                     and x["generator"] == job.generator]))
    df = pd.DataFrame(rows)
    if args.out:
        Path(args.out).write_text(df.to_json(orient="records", indent=1))
    summary(df)


def _covers(lo, hi, value) -> bool | None:
    if pd.isna(value) or pd.isna(lo):
        return None
    return bool(lo - 1e-12 <= value <= hi + 1e-12)


def report(df: pd.DataFrame) -> None:
    r = df.iloc[0]
    print(f"\nseed {r.seed}, {r.generator}-generated: {r.measured} of {r.positions} positions "
          f"measured; rollouts {r.rollouts} ({r.rollouts_asked} asked, shared) vs exhaustive "
          f"{r.ref_rollouts} = {r.rollouts / r.ref_rollouts:.1%}; rollout tokens "
          f"{r.rollout_tokens} vs {r.ref_rollout_tokens} = "
          f"{r.rollout_tokens / r.ref_rollout_tokens:.1%}; {r.seconds:.0f} s; rolled-out "
          f"positions by status {r.stops}")
    for cut, g in df.groupby("pivot_cut"):
        s = g.iloc[0]
        hit = _covers(s.share_low, s.share_high, s.share_exhaustive)
        line = (f"  cut {cut:g}: share {s.share:.4f} [{s.share_low:.4f}, {s.share_high:.4f}] "
                f"vs exhaustive {s.share_exhaustive:.4f} ({'covered' if hit else 'MISSED'})")
        for x in g.itertuples():
            hit = _covers(x.auc_low, x.auc_high, x.auc_exhaustive)
            word = "n/a" if hit is None else "ok" if hit else "MISSED"
            line += (f"; {x.signal} AUC {x.auc:.2f} [{x.auc_low:.2f}, {x.auc_high:.2f}] vs "
                     f"{x.auc_exhaustive:.2f} ({word})" if pd.notna(x.auc)
                     else f"; {x.signal} AUC n/a")
        print(line)


def summary(df: pd.DataFrame) -> None:
    runs = df.drop_duplicates(["seed", "generator"])
    print(f"\nover {len(runs)} runs: rollouts {runs.rollouts.sum() / runs.ref_rollouts.sum():.1%} "
          f"of the exhaustive design's, rollout tokens "
          f"{runs.rollout_tokens.sum() / runs.ref_rollout_tokens.sum():.1%}")
    shares = df.drop_duplicates(["seed", "generator", "pivot_cut"])
    cov = [_covers(r.share_low, r.share_high, r.share_exhaustive) for r in shares.itertuples()]
    auc = [_covers(r.auc_low, r.auc_high, r.auc_exhaustive) for r in df.itertuples()]
    auc = [c for c in auc if c is not None]
    print(f"share intervals covering the exhaustive share: {sum(cov)} of {len(cov)}; AUC "
          f"intervals covering the exhaustive AUC: {sum(auc)} of {len(auc)}")
    width = (shares.share_high - shares.share_low).mean()
    ref_width = (shares.share_exhaustive_high - shares.share_exhaustive_low).mean()
    print(f"mean share interval width: stratified {width:.4f}, exhaustive {ref_width:.4f}")


if __name__ == "__main__":
    main()
