"""The held-out gain over the base, paired by prompt (the evaluate stage's and the report's),
against scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rlvr.generation.accuracy import paired_gain
from rlvr.layout import Layout
from rlvr.report.blocks import gain_table
from rlvr.store.atomic import MARKER


def test_paired_gain_matches_a_paired_t_statistic_and_aligns_by_prompt():
    rng = np.random.default_rng(0)
    ids = rng.permutation(96)
    difficulty = rng.uniform(0, 1, 96)  # shared by both models: what pairing removes
    base = pd.Series(np.clip(difficulty + rng.normal(0, 0.1, 96), 0, 1), index=ids)
    model = pd.Series(np.clip(difficulty + 0.2 + rng.normal(0, 0.1, 96), 0, 1), index=ids)
    shuffled = model.sample(frac=1.0, random_state=1)  # another row order: same prompts
    got = paired_gain(shuffled, base)
    test = stats.ttest_rel(model.to_numpy(), base.to_numpy())
    diff = (model - base).mean()
    se = diff / test.statistic
    assert got["gain"] == pytest.approx(diff, abs=1e-12)
    half = stats.norm.ppf(0.975) * se
    assert got["ci_lo"] == pytest.approx(diff - half, rel=1e-9)
    assert got["ci_hi"] == pytest.approx(diff + half, rel=1e-9)
    # unpaired, the same data give a much wider interval: pairing is what makes it tight
    unpaired = stats.norm.ppf(0.975) * np.sqrt(model.var() / 96 + base.var() / 96)
    assert got["ci_hi"] - got["ci_lo"] < unpaired


def test_paired_gain_refuses_models_sampled_on_different_prompts():
    base = pd.Series([0.5, 0.25, 1.0], index=[0, 1, 2])
    with pytest.raises(ValueError, match="different prompts"):
        paired_gain(pd.Series([0.5, 0.75], index=[0, 1]), base)


def test_gain_table_reads_each_models_samples_and_pairs_them(tmp_path):
    rewards = {"base": [0, 0, 1, 0, 1, 0], "rl": [1, 0, 1, 1, 1, 0]}  # 3 prompts x 2 samples
    layout = Layout(tmp_path)
    for model, r in rewards.items():
        d = layout.samples_dir / f"model={model}"
        d.mkdir(parents=True)
        df = pd.DataFrame({"model": model, "prompt_id": [2, 2, 0, 0, 1, 1], "reward": r})
        df.to_parquet(d / "part-0.parquet")
    (layout.samples_dir / "model=sft").mkdir()  # no part file yet: left out
    assert gain_table(layout) is None  # the table is not complete before its marker
    (layout.samples_dir / MARKER).touch()  # the samples table's one marker, at its top
    table = gain_table(layout)
    assert list(table["model"]) == ["rl"]
    row = table.iloc[0]
    per_prompt = np.array([0.5 - 0.0, 0.5 - 0.5, 1.0 - 0.5])  # prompts 2, 0, 1
    assert row["accuracy"] == pytest.approx(4 / 6) and row["prompts"] == 3
    assert row["gain"] == pytest.approx(per_prompt.mean())
    half = stats.norm.ppf(0.975) * per_prompt.std(ddof=1) / np.sqrt(3)
    assert row["ci_lo"] == pytest.approx(per_prompt.mean() - half, rel=1e-9)
    assert row["ci_hi"] == pytest.approx(per_prompt.mean() + half, rel=1e-9)
    assert gain_table(layout, base="missing") is None
