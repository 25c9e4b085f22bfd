"""The smollm2 family's training and evaluation stages: rl, sft, evaluate.

The training stages use the project's own trainers (`train_grpo`, `train_lm`), the prompts the
sample stage uses (`encode_prompts`, chat template and demonstrations included) and the grader
registry; only the task and the weights are this family's. Each function reads its inputs from
the layout, writes its outputs atomically and returns a small summary; `evaluate_family` reads
the samples table, so the accuracies and the token tables come from the same responses.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from rlvr.config import require
from rlvr.layout import Layout
from rlvr.models.checks import check_model
from rlvr.models.loading import load_spec, pin_torch_threads
from rlvr.models.specs import ModelsParams, ModelSpec, rl_step_of
from rlvr.smollm2.stages import outputs
from rlvr.smollm2.task import describe_response, problem_of
from rlvr.store.atomic import atomic_dir, sweep_debris, write_json
from rlvr.store.tables import samples_dir
from rlvr.testbed.graders import get_grader
from rlvr.testbed.prompts import encode_prompts, load_prompt_file
from rlvr.training.family import save_dir, write_rows
from rlvr.training.grpo import GRPOParams, freeze_layers, train_grpo
from rlvr.training.lm import Example, SFTParams, train_lm

BASE_MADE_BY = "convert"  # the stage of the real pipeline that writes the base model


@dataclass(frozen=True)
class TrainingParams:
    """`training`: what the sft control shares with rl (torch runs one thread per stage,
    `pin_torch_threads`, so results do not depend on the machine)."""

    sft_trainable_layers: int = 6  # the SFT control trains what RL trains (`rl.trainable_layers`)

    def __post_init__(self) -> None:
        require(self.sft_trainable_layers >= 0, "sft_trainable_layers", "must be >= 0",
                "use 0 (all) or rl.trainable_layers")


def _base_spec(models: ModelsParams, layout: Layout) -> ModelSpec:
    """The converted base, as `models` resolves it, built here by `convert` (not `pretrain`)."""
    spec = models.spec("base", layout)
    return dataclasses.replace(spec, built_by=BASE_MADE_BY) if spec.built_by else spec


def _load_base(layout: Layout, models: ModelsParams, stage: str) -> tuple[ModelSpec, list]:
    """Check the base and the train split before touching `stage`'s outputs, then sweep them;
    returns the base's spec and the train prompt records."""
    spec = _base_spec(models, layout)
    check_model(spec)
    records = load_prompt_file(layout.split("train"), key="")
    sweep_debris(*outputs(layout, stage))
    return spec, records


def train_rl(
    layout: Layout, cfg: GRPOParams, models: ModelsParams, grader: str, progress: bool = False,
) -> dict[str, float]:
    """GRPO/DAPO from the base on the train split; checkpoints `rl_step_<N>` under rl_steps."""
    pin_torch_threads()
    grade = get_grader(grader, "sample.grader")
    spec, records = _load_base(layout, models, "rl")
    model, tokenizer = load_spec(spec)
    with atomic_dir(layout.rl_steps_dir) as tmp_steps:
        log = train_grpo(model, tokenizer, records, grade, cfg,
                         checkpoint_dir=tmp_steps, progress=progress,
                         chat_template=spec.chat_template)
    save_dir(model, tokenizer, layout.model_dir("rl"))
    write_rows(log, layout.plot("rl_log"))
    tail = log[-5:]
    return {"final_reward": sum(r["reward_mean"] for r in tail) / len(tail),
            "seconds": log[-1]["seconds"], "steps": len(log)}


def train_sft(
    layout: Layout, cfg: SFTParams, models: ModelsParams, training: TrainingParams,
    progress: bool = False,
) -> dict[str, float]:
    """SFT control: the base fine-tuned on the reference solutions of the train split."""
    pin_torch_threads()
    spec, records = _load_base(layout, models, "sft")
    solutions = pd.read_parquet(layout.split("train"), columns=["solution"])["solution"]
    model, tokenizer = load_spec(spec)
    prompts = encode_prompts(records, tokenizer, spec.chat_template)
    answers = tokenizer(list(solutions), add_special_tokens=False).input_ids
    eos = tokenizer.eos_token_id
    examples = [Example(p + r + [eos], len(p)) for p, r in zip(prompts, answers, strict=True)]
    freeze_layers(model, training.sft_trainable_layers)
    curve = train_lm(model, examples, cfg, tokenizer.pad_token_id, mask_prompt=True,
                     progress=progress, desc="sft")
    save_dir(model, tokenizer, layout.model_dir("sft"))
    write_rows(curve, layout.plot("sft_loss"))
    return {"final_loss": curve[-1]["loss"], "n_examples": len(examples),
            "seconds": curve[-1]["seconds"]}


def _interval(correct: np.ndarray) -> dict[str, float]:
    """Accuracy with a 95% normal interval over prompts (a prompt's samples are correlated);
    correct: (prompts, samples) of 0/1."""
    acc = float(correct.mean())
    per_prompt = correct.mean(axis=1)
    se = float(per_prompt.std(ddof=1) / math.sqrt(len(per_prompt))) if len(per_prompt) > 1 else 0.0
    return {"accuracy": acc, "stderr": se, "ci95_low": max(0.0, acc - 1.96 * se),
            "ci95_high": min(1.0, acc + 1.96 * se)}


def summarize_model(df: pd.DataFrame) -> dict[str, float | int]:
    """Held-out accuracy (CI over prompts) and how the responses went (`describe_response`).

    df: one model's samples rows (prompt_id, sample_id, response_text, reward, n_tokens,
    finish_reason).
    """
    df = df.sort_values(["prompt_id", "sample_id"])
    n = int(df.groupby("prompt_id").size().iloc[0])
    correct = df["reward"].to_numpy(dtype=float).reshape(-1, n)
    shape = pd.DataFrame([describe_response(problem_of(p), t)
                          for p, t in zip(df["prompt_id"], df["response_text"], strict=True)])
    return {
        **_interval(correct), "n": int(correct.size), "n_prompts": int(correct.shape[0]),
        "pass_at_n": float((correct.max(axis=1) > 0).mean()),
        "mean_length": float(df["n_tokens"].mean()),
        "share_truncated": float((df["finish_reason"] == "length").mean()),
        **{f"share_{k}": float(v) for k, v in shape.mean().items()},
    }


def evaluate_family(layout: Layout) -> dict[str, float]:
    """Accuracy of every sampled model on the held-out prompts, from the samples table.

    Writes {"<model>": {...}} to the `models` metrics and the RL checkpoints' accuracy by
    step (the base as step 0, the final model at its step) to the `rl_checkpoint_accuracy` plot.
    """
    cols = ["model", "prompt_id", "sample_id", "response_text", "reward", "n_tokens",
            "finish_reason"]
    metrics, steps = {}, []
    for directory in sorted(layout.samples_dir.glob("model=*")):
        name = directory.name.removeprefix("model=")
        parts = sorted(samples_dir(layout.samples_dir, name).glob("part-*.parquet"))
        df = pd.concat([pq.read_table(p, columns=cols[1:]).to_pandas() for p in parts])
        metrics[name] = summarize_model(df)
        step = rl_step_of(name)
        if step is not None or name == "base":
            steps.append({"step": step or 0, "accuracy": metrics[name]["accuracy"]})
    if not metrics:
        raise ValueError(f"no samples under {layout.samples_dir}: run the sample stage first "
                         "(dvc repro sample)")
    log = pd.read_csv(layout.plot("rl_log")) if layout.plot("rl_log").exists() else None
    if "rl" in metrics and log is not None:
        steps.append({"step": int(log["step"].max()), "accuracy": metrics["rl"]["accuracy"]})
    sweep_debris(*outputs(layout, "evaluate"))  # every input read: now the outputs are ours
    write_json(metrics, layout.metrics("models"))
    write_rows(sorted(steps, key=lambda r: r["step"]), layout.plot("rl_checkpoint_accuracy"))
    return {name: m["accuracy"] for name, m in metrics.items()}
