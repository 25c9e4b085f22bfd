"""Held-out accuracy of every model of a study, from the samples table: one number per model.

The evaluate stage reads the responses the sample stage drew (so the accuracies and the token
tables come from the same responses) and writes, per model: accuracy with a 95% interval over
prompts (a prompt's samples are correlated, so the prompt is the unit), pass@n, length and
truncation, the family's description of how the responses went (`Family.describe`), and the
gain over the base paired by prompt (pairing removes prompt difficulty: a much tighter interval
than two separate ones). RL checkpoints also give the accuracy-vs-step curve. This module is the
one place those intervals are computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from rlvr.layout import Layout
from rlvr.models.specs import rl_step_of
from rlvr.store.atomic import sweep_debris, write_json, write_rows
from rlvr.testbed.prompts import PromptRecord, load_prompt_file
from rlvr.warehouse.views import connect

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def prompt_interval(correct: np.ndarray) -> dict[str, float]:
    """Accuracy with a 95% normal interval over prompts; correct: (prompts, samples) of 0/1."""
    acc = float(correct.mean())
    per_prompt = correct.mean(axis=1)
    n = len(per_prompt)
    se = float(per_prompt.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {"accuracy": acc, "stderr": se, "ci95_low": max(0.0, acc - Z95 * se),
            "ci95_high": min(1.0, acc + Z95 * se)}


def paired_gain(model: pd.Series, base: pd.Series) -> dict[str, float]:
    """Accuracy minus the base's on the same prompts (per-prompt means indexed by prompt id),
    with a 95% normal interval over prompts."""
    both = pd.concat([model, base], axis=1, join="inner").to_numpy(dtype=float)
    if len(both) != len(model) or len(both) != len(base):
        raise ValueError("paired_gain: the models were sampled on different prompts; rerun "
                         "the sample stage (dvc repro sample)")
    diff = both[:, 0] - both[:, 1]
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    gain = float(diff.mean())
    return {"gain": gain, "ci_lo": gain - Z95 * se, "ci_hi": gain + Z95 * se}


def summarize_model(df: pd.DataFrame, describe: Callable | None,
                    records: dict[str, PromptRecord]) -> dict[str, float | int]:
    """One model's accuracy and response shape. df: its samples rows (prompt_id, sample_id,
    response_text, reward, n_tokens, finish_reason)."""
    df = df.sort_values(["prompt_id", "sample_id"])
    n = int(df.groupby("prompt_id").size().iloc[0])
    correct = df["reward"].to_numpy(dtype=float).reshape(-1, n)
    out = {**prompt_interval(correct), "n": int(correct.size), "n_prompts": int(correct.shape[0]),
           "pass_at_n": float((correct.max(axis=1) > 0).mean()),
           "mean_length": float(df["n_tokens"].mean()),
           "share_truncated": float((df["finish_reason"] == "length").mean())}
    if describe is not None:
        traits = pd.DataFrame([describe(records[p], t) for p, t in
                               zip(df["prompt_id"], df["response_text"], strict=True)])
        out.update({f"share_{k}": float(v) for k, v in traits.mean().items()})
    return out


def evaluate_samples(layout: Layout, describe: Callable | None = None) -> dict[str, float]:
    """Accuracy of every sampled model, its paired gain over the base, and the checkpoints'
    accuracy by step (the base as step 0, `rl` at its last step) into the `models` metrics and
    the `rl_checkpoint_accuracy` plot. Returns model -> accuracy."""
    records = {r.prompt_id: r for r in load_prompt_file(layout.split("eval"), key="")}
    con = connect(layout.root)
    df = con.sql("select model, prompt_id, sample_id, response_text, reward, n_tokens, "
                 "finish_reason from samples").df()
    if df.empty:
        raise ValueError(f"no samples under {layout.samples_dir}: run the sample stage first "
                         "(dvc repro sample)")
    metrics = {name: summarize_model(rows, describe, records)
               for name, rows in df.groupby("model", sort=True)}
    per_prompt = df.groupby(["model", "prompt_id"])["reward"].mean()
    if "base" in metrics:
        for name in metrics:
            if name != "base":
                metrics[name]["gain_over_base"] = paired_gain(per_prompt[name],
                                                              per_prompt["base"])
    steps = [{"step": rl_step_of(n) or 0, "accuracy": m["accuracy"]} for n, m in metrics.items()
             if n == "base" or rl_step_of(n) is not None]
    log = pd.read_csv(layout.plot("rl_log")) if layout.plot("rl_log").exists() else None
    if "rl" in metrics and log is not None:
        steps.append({"step": int(log["step"].max()), "accuracy": metrics["rl"]["accuracy"]})
    sweep_debris(layout.metrics("models"), layout.plot("rl_checkpoint_accuracy"))
    write_json(metrics, layout.metrics("models"))
    write_rows(sorted(steps, key=lambda r: r["step"]), layout.plot("rl_checkpoint_accuracy"))
    return {name: m["accuracy"] for name, m in metrics.items()}
