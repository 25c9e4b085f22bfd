"""The HTML report: self-contained, every section present, viewer colours and candidates right,
and missing inputs announced instead of invented."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from markupsafe import escape

from rlvr.layout import Layout
from rlvr.models.loading import save_model
from rlvr.models.specs import ModelsParams, NamedModel
from rlvr.report.blocks import ReportOptions, ReportParams
from rlvr.report.page import build_report, render_page
from rlvr.report.sections import SECTIONS
from rlvr.store.atomic import MARKER

PAIR = "base__rl"
RESPONSES = ["chain 3 8 15 ; answer = 15", "pairs 8 7 ; answer ~ 15", "chain 3 9 15 ; answer = 16"]
PROMPT = "sum 3 5 7 :"


def _analysis_tables() -> dict[str, pd.DataFrame]:
    """One small table per analysis, in the schema the `analyze` stage writes."""
    g = {"pair": PAIR, "generator": "tuned"}
    lo = 10.0 ** np.arange(-6, 0)
    return {
        "agg_js_histogram": pd.DataFrame({**g, "bin_index": range(6), "js_lo": lo,
                                          "js_hi": lo * 10, "n_positions": [9, 4, 3, 2, 1, 1],
                                          "share_positions": np.array([9, 4, 3, 2, 1, 1]) / 20}),
        "agg_sparsity": pd.DataFrame({**g, "threshold": [0.001, 0.01, 0.1],
                                      "n_positions": 20, "n_above": [7, 4, 2],
                                      "share_above": [0.35, 0.2, 0.1]}),
        "agg_js_by_entropy_fixed": pd.DataFrame({**g, "bin_index": [1, 2],
                                                 "entropy_lo": [0.0, 1.0],
                                                 "entropy_hi": [1.0, None], "n_positions": 10,
                                                 "mean_js": [0.01, 0.1],
                                                 "share_divergent": [0.0, 0.3]}),
        "agg_js_by_position": pd.DataFrame({**g, "bin_index": [0, 1], "position_lo": [0, 0.5],
                                            "position_hi": [0.5, 1.0], "n_positions": 10,
                                            "mean_js": [0.2, 0.05]}),
        "agg_topk_overlap": pd.DataFrame({**g, "subset": "all", "k": [1, 2],
                                          "mean_overlap": [0.6, 0.9], "n_positions": 20}),
        "agg_truncation": pd.DataFrame({**g, "n_positions": [20], "mae": [0.004],
                                        "spearman": [0.97]}),
        "agg_js_lorenz": pd.DataFrame({**g, "population_share": [0.0, 0.5, 1.0],
                                       "mass_share": [0.0, 0.05, 1.0]}),
        "agg_js_concentration": pd.DataFrame({**g, "n_positions": 20, "total_js": 1.0,
                                              "gini": 0.88, "mass_share": [0.5, 0.9],
                                              "n_holding": [2, 6],
                                              "share_positions": [0.1, 0.3]}),
        "failure_prediction": pd.DataFrame({**g, "summary": ["max_js", "mean_js"],
                                            "n_responses": 3, "n_failed": 2,
                                            "auroc": [0.75, 0.5], "auroc_low": [0.5, 0.25],
                                            "auroc_high": [1.0, 0.75]}),
    }


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, tiny_pair, tokenizer) -> Path:
    root = tmp_path_factory.mktemp("data")
    for name, model in zip(("base", "rl"), tiny_pair, strict=True):
        save_model(model, tokenizer, root / "models" / name)
    prompt_ids = tokenizer(PROMPT).input_ids
    rng = np.random.default_rng(0)
    token_rows, sample_rows = [], []
    for generator, model_name in (("base", "base"), ("tuned", "rl")):
        for sample_id, text in enumerate(RESPONSES):
            ids = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            reward = int(text.endswith("= 15"))
            js = rng.uniform(0, math.log(2), len(ids)) ** 3  # mostly small, some large
            for pos, tok in enumerate(ids):
                token_rows.append({
                    "pair": PAIR, "generator": generator, "prompt_id": "sum-357",
                    "sample_id": sample_id, "position": pos, "n_tokens": len(ids),
                    "token_id": tok, "token_text": tokenizer.convert_ids_to_tokens(tok),
                    "role": "other", "reward": reward, "js": float(js[pos]),
                    "logprob_base": -0.5, "logprob_tuned": -0.25, "top1_base": tok,
                    "top1_tuned": tok})
            sample_rows.append({"model": model_name, "prompt_id": "sum-357",
                                "sample_id": sample_id, "prompt_token_ids": prompt_ids,
                                "response_token_ids": ids, "reward": reward})
    tokens = pd.DataFrame(token_rows)
    for (pair, gen), part in tokens.groupby(["pair", "generator"]):
        out = root / "tokens" / f"pair={pair}" / f"generator={gen}"
        out.mkdir(parents=True)
        part.to_parquet(out / "part-0.parquet")  # like rlvr.store.tables: partition columns kept
    samples = pd.DataFrame(sample_rows)
    for model, part in samples.groupby("model"):
        (root / "samples" / f"model={model}").mkdir(parents=True)
        part.to_parquet(root / "samples" / f"model={model}" / "part-0.parquet")
    for table in ("tokens", "samples"):  # directory tables count once their writer finished
        (root / table / MARKER).write_text("ok\n")
    (root / "analysis").mkdir()
    for name, df in _analysis_tables().items():
        df.to_parquet(root / "analysis" / f"{name}.parquet")
    (root / "metrics").mkdir()
    (root / "metrics" / "models.json").write_text(json.dumps(
        {"base": {"accuracy": 0.25}, "rl": {"accuracy": 0.625}}))
    (root / "plots").mkdir()
    pd.DataFrame({"arm": "forward", "direction": "forward", "alpha": 0.0, "top_k": 0,
                  "rule": ["none", "all", "js", "random"],
                  "target_budget": [0.0, 1.0, 0.1, 0.1], "threshold": [1.0, -1.0, 0.1, 0.1],
                  "budget_share": [0.0, 1.0, 0.11, 0.095],
                  "accuracy": [0.25, 0.625, 0.55, 0.35], "accuracy_low": 0.2,
                  "accuracy_high": 0.6}).to_csv(root / "plots" / "cross_accuracy_by_budget.csv",
                                                index=False)
    pd.DataFrame({"arm": ["forward"], "target_budget": [0.1], "rule": ["js"],
                  "diff": [0.2], "diff_low": [0.05], "diff_high": [0.3]}).to_csv(
        root / "plots" / "cross_rule_vs_random.csv", index=False)
    pd.DataFrame({"step": [1, 2], "reward_mean": [0.4, 0.5], "clip_frac_low": [0.01, 0.03],
                  "clip_frac_high": [0.0, 0.02], "ratio_std": [0.1, 0.2],
                  "k3_old": [0.005, 0.01], "k3_old_later": [0.006, 0.012],
                  "kl_base": [0.01, 0.05]}).to_csv(root / "plots" / "rl_log.csv", index=False)
    (root / "cross").mkdir()
    paired = [("minus_random", "forward", "js", 0.1, 0.2, 0.05, 0.3),
              ("minus_tuned", "extrapolate-a0.1", "gap_neg", 0.05, 0.03, -0.01, 0.07),
              ("minus_exact", "forward-top50", "js", 0.05, -0.02, -0.06, 0.02)]
    pd.DataFrame([{"comparison": c, "arm": a, "rule": r, "target_budget": b, "budget_cell": b,
                   "diff": d, "diff_low": lo, "diff_high": hi} for c, a, r, b, d, lo, hi in paired]
                 ).to_parquet(root / "cross" / "paired.parquet")
    pd.DataFrame({"arm": "forward", "target_budget": [0.05, 0.1], "rule": "kl_sym_topk",
                  "share": [0.05, 0.1], "jaccard_with_js": [0.4, 0.5]}).to_parquet(
        root / "cross" / "gate_overlap.parquet")
    (root / "weighted").mkdir()
    pd.DataFrame({"variant": ["baseline", "k3_old_high"], "mean": [0.5, 0.55],
                  "std": [0.01, 0.02], "n_seeds": 3, "diff": [np.nan, 0.05],
                  "diff_lo": [np.nan, 0.01], "diff_hi": [np.nan, 0.09]}).to_parquet(
        root / "weighted" / "results.parquet")
    return root


@pytest.fixture(scope="module")
def page(data_root) -> str:
    options = ReportOptions(ReportParams(responses_per_group=1, viewer_pairs=[]), ModelsParams(),
                            Layout(data_root))
    summary = build_report(options)
    assert summary["figures"] >= 6 and summary["failures"] == 0
    return (data_root / "report" / "index.html").read_text()


def test_self_contained_with_every_section(page):
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page
    for section in SECTIONS:
        assert f"<h2>{section.title}</h2>" in page
    assert page.count('src="data:image/png;base64,') >= 6


def test_figure_captions_and_notices_for_missing_analyses(page):
    assert "base__rl/tuned 80.0% below 1e-3" in page  # bins ending <= 1e-3: 9+4+3 of 20
    assert "Held-out accuracy per model: base 25.0%, rl 62.5%." in page
    # produced by no stage in this fixture: each says which stage makes it
    assert "data/analysis/agg_checkpoint_evolution.parquet" in page
    assert "forward 10.0%: js 55.0% (at 11.0%), random 35.0% (at 9.5%)" in page
    assert "forward: 1 of 1 (rule, budget &lt;= 10%) intervals exclude 0" in page
    assert "rl: clip low 2.0%, high 1.0%, k3 on non-first updates 0.009" in page
    assert "k3_old_high 55.0 ± 2.0 (n=3), Δ +5.0 [+1.0, +9.0]" in page
    assert "training curves (data/weighted/training)" in page  # absent in the fixture
    assert "base__rl/tuned Gini 0.880, 50% of the mass in 10.0% of positions" in page
    assert "base__rl/tuned best max_js 0.75 [0.50, 1.00]" in page
    assert "extrapolate-a0.1: 0 of 1 gated cells above 0, best gap_neg at 5% +3.0" in page
    assert "forward Jaccard of the companion&#39;s gate with JS 0.40 at 5%, 0.50 at 10%" in page
    cross = page.split('<section id="cross">')[1].split("</section>")[0]
    assert "dvc repro weighted_summary" in page and "dvc repro cross_sample" not in cross


JS_BINS = [(0.0, "#ffffff"), (0.001, "#fff3c4"), (0.01, "#ffe08a"), (0.05, "#fdb863"),
           (0.1, "#f4845f"), (0.2, "#d7301f"), (0.3, "#7f0000")]


def test_findings_metrics_written_with_the_page(page, data_root):
    # the fixture has no analysis/cross/weighted metrics: every finding reads n/a, with notices
    findings = json.loads((data_root / "metrics" / "findings.json").read_text())
    assert {v["reproduces"] for v in findings.values()} == {"n/a"}
    assert "analysis metrics (data/metrics/analysis.json)" in page


def test_viewer_colours_follow_js(page):
    spans = re.findall(r'style="background:(#[0-9a-f]{6})" data-js="([0-9.]+)"', page)
    # one correct and one incorrect response per generator
    assert len(spans) == 2 * (len(RESPONSES[0].split()) + 1 + len(RESPONSES[1].split()) + 1)
    for colour, js in spans:
        expected = [c for edge, c in JS_BINS if float(js) >= edge][-1]
        assert colour == expected, (js, colour)
    assert len({c for c, _ in spans}) >= 3  # the fixture's js spans several bins


def test_viewer_tooltips_show_both_models_top_candidates(page, tiny_pair, tokenizer):
    prompt_ids = tokenizer(PROMPT).input_ids
    ids = tokenizer(RESPONSES[0], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    seq = torch.tensor([prompt_ids + ids])
    with torch.no_grad():
        probs = [torch.softmax(m(input_ids=seq).logits[0, len(prompt_ids) - 1], -1)
                 for m in tiny_pair]
    for label, p in zip(("base top: ", "tuned top: "), probs, strict=True):
        best = int(p.argmax())
        # candidates are decoded text, quoted so that spaces and newlines show
        expected = f"{label}{tokenizer.decode([best])!r} {float(p[best]):.2f}"
        assert escape(expected) in page


def test_missing_inputs_give_notices_not_figures(tmp_path):
    page = render_page(ReportOptions(ReportParams(), ModelsParams(),
                                     Layout(tmp_path / "nothing"))).html()
    assert "<img" not in page
    for section in SECTIONS:
        body = page.split(f'<section id="{section.anchor}">')[1].split("</section>")[0]
        assert "Not produced:" in body, section.title
    assert "dvc repro score" in page and "dvc repro analyze" in page


def test_viewer_without_models_falls_back_to_top1(data_root, tmp_path):
    elsewhere = {n: NamedModel(path=str(tmp_path / "no-models" / n)) for n in ("base", "rl")}
    page = render_page(ReportOptions(ReportParams(responses_per_group=1, viewer_pairs=[]),
                                     ModelsParams(named=elsewhere), Layout(data_root))).html()
    assert "Not produced: models for the top-k candidates" in page
    assert "top1_base " in page and "base top: " not in page


def test_study_table_reads_the_pair_and_generator():
    from rlvr.report.blocks import study_table

    headline = {"pairs": {"base__rl": {"tuned": {"share_js_above_0.01": 0.125},
                                       "base": {"share_js_above_0.01": 0.5}}}}
    table = study_table(headline)
    row = table[table["finding"].str.startswith("positions with JS > 0.01")]
    assert row.iloc[0, 2] == 0.125
    assert table.iloc[:, 2].isna().sum() == len(table) - 1  # absent keys stay NaN, not invented


def test_viewer_candidates_agree_with_the_scorer(tiny_pair, tokenizer):
    """The viewer's teacher-forced top-1 is the scorer's top1_base/top1_tuned at every position."""
    from rlvr.report.viewer import top_candidates
    from rlvr.tokens.scorer import Response, ScoreParams, score_responses

    prompt_ids = tokenizer(PROMPT).input_ids
    responses = [Response("sum-357", i, prompt_ids,
                          tokenizer(t, add_special_tokens=False).input_ids, 0)
                 for i, t in enumerate(RESPONSES)]
    table = pd.concat(t.to_pandas() for t in score_responses(
        *tiny_pair, tokenizer, responses, PAIR, "tuned", ScoreParams()))
    for r in responses:
        rows = table[table["sample_id"] == r.sample_id].sort_values("position")
        cand = top_candidates(*tiny_pair, tokenizer, r.prompt_ids, r.response_ids, k=3)
        assert [c[0][0] for c in cand.base] == tokenizer.convert_ids_to_tokens(
            rows["top1_base"].tolist())
        assert [c[0][0] for c in cand.tuned] == tokenizer.convert_ids_to_tokens(
            rows["top1_tuned"].tolist())
        for row in cand.base + cand.tuned:  # best first, k of them
            assert len(row) == 3 and row[0][1] >= row[1][1] >= row[2][1]


def test_viewer_picks_one_correct_and_one_incorrect_response_per_generator():
    from rlvr.report.viewer import select_responses

    rows = pd.DataFrame({"pair": PAIR, "generator": ["base", "base", "base", "tuned", "tuned"],
                         "prompt_id": ["b", "a", "a", "a", "a"], "sample_id": [0, 0, 1, 0, 1],
                         "position": 0, "reward": [1, 1, 0, 1, 0], "token_id": [5, 6, 7, 5, 6]})
    chosen = select_responses(rows, per_group=1)
    # per (pair, generator, reward): the first by prompt_id then sample_id, correct first
    assert chosen[["generator", "prompt_id", "sample_id", "reward"]].values.tolist() == [
        ["base", "a", 0, 1], ["base", "a", 1, 0], ["tuned", "a", 0, 1], ["tuned", "a", 1, 0]]
    assert select_responses(rows, per_group=1, pairs=["base__sft"]).empty


def test_viewer_shows_distinct_responses():
    """Two samples of one prompt with the same tokens are one response to a reader."""
    from rlvr.report.viewer import select_responses

    tokens = {0: [5, 9], 1: [5, 8], 2: [5, 9], 3: [5, 9, 2]}  # 2 repeats 0; 3 only starts alike
    rows = pd.DataFrame([{"pair": PAIR, "generator": "base", "prompt_id": "a", "sample_id": s,
                          "position": i, "token_id": t, "reward": 0}
                         for s, ids in tokens.items() for i, t in enumerate(ids)])
    chosen = select_responses(rows, per_group=3)
    assert chosen["sample_id"].tolist() == [0, 1, 3]


def _copy(data_root: Path, to: Path) -> Layout:
    """The fixture's data without its models (the viewer then shows each model's top-1)."""
    shutil.copytree(data_root, to, ignore=shutil.ignore_patterns("models", "report"))
    return Layout(to)


def test_failed_figures_show_in_place_and_are_counted(data_root, tmp_path):
    """A producer/report mismatch (the figure's drawing raises) and an empty input each replace
    their figure with a failure notice, and the report counts them from the page's figures; a
    missing input is a plain notice, not a failure."""
    layout = _copy(data_root, tmp_path / "d")
    pd.DataFrame({"variant": "baseline", "seed": 0, "step": [0, 1], "metric": "accuracy",
                  "value": [0.2, 0.3]}).to_parquet(layout.weighted_dir / "training.parquet")
    topk = layout.analysis_dir / "agg_topk_overlap.parquet"
    pd.read_parquet(topk).iloc[:0].to_parquet(topk)
    options = ReportOptions(ReportParams(responses_per_group=1), ModelsParams(), layout)
    expected = ["Could not draw top-k overlap: its input has no rows to plot",
                "Could not draw training curves: training table: no rows with metric "
                "'eval_accuracy'; has ['accuracy']"]
    assert render_page(options).failures == expected
    summary = build_report(options)
    page = (layout.report_dir / "index.html").read_text()
    shown = re.findall(r'<div class="notice failed">(.*?)</div>', page)
    assert summary["failures"] == 2 and [html.unescape(t) for t in shown] == expected
    # the planted table has no trainer update statistics: said so, not a failure
    assert "No DAPO diagnostics: no run of the grid took an update" in page
    nothing = ReportOptions(ReportParams(), ModelsParams(), Layout(tmp_path / "nothing"))
    assert render_page(nothing).failures == []


def test_values_are_escaped(data_root, tmp_path):
    """Names and texts from the data (a model, a variant, a token) reach the page as text."""
    layout = _copy(data_root, tmp_path / "d")
    evil = "<script>alert(1)</script>"
    layout.metrics("models").write_text(json.dumps(
        {"base": {"accuracy": 0.25}, evil: {"accuracy": 0.5}}))
    results = layout.weighted_dir / "results.parquet"
    pd.read_parquet(results).assign(variant=["baseline", evil]).to_parquet(results)
    part = next((layout.tokens_dir / f"pair={PAIR}" / "generator=tuned").glob("*.parquet"))
    tokens = pd.read_parquet(part).reset_index(drop=True)
    tokens.loc[0, "token_text"] = "</span>" + evil
    tokens.to_parquet(part)
    page = render_page(ReportOptions(ReportParams(responses_per_group=1, viewer_pairs=[]),
                                     ModelsParams(), layout)).html()
    assert "<script" not in page
    shown = html.escape(evil, quote=False)
    assert f"base 25.0%, {shown} 50.0%." in page  # the figure's caption
    assert f"<td>{shown}</td>" in page  # a table cell
    assert f"&lt;/span&gt;{shown}</span>" in page  # a token of the viewer
