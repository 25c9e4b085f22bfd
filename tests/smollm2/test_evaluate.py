"""The real family's held-out gain over the base, paired by prompt, against scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rlvr.smollm2.family import paired_gain


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
    assert got["gain_vs_base"] == pytest.approx(diff, abs=1e-12)
    half = stats.norm.ppf(0.975) * se
    assert got["gain_ci95_low"] == pytest.approx(diff - half, rel=1e-3)
    assert got["gain_ci95_high"] == pytest.approx(diff + half, rel=1e-3)
    # unpaired, the same data give a much wider interval: pairing is what makes it tight
    unpaired = stats.norm.ppf(0.975) * np.sqrt(model.var() / 96 + base.var() / 96)
    assert got["gain_ci95_high"] - got["gain_ci95_low"] < unpaired


def test_paired_gain_refuses_models_sampled_on_different_prompts():
    base = pd.Series([0.5, 0.25, 1.0], index=[0, 1, 2])
    with pytest.raises(ValueError, match="different prompts"):
        paired_gain(pd.Series([0.5, 0.75], index=[0, 1]), base)
