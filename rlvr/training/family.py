"""The toy model family, stage by stage: base pretraining, RL, SFT/RFT controls, evaluation.

Each function reads its inputs from the layout, writes its outputs there atomically, and
returns a small summary; the Prefect tasks of the stages wrap them one to one. The training
stages load the base this pipeline built; evaluation resolves every model through `models`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from rlvr.generation.sampler import SamplingParams
from rlvr.layout import Layout
from rlvr.models.checks import check_model
from rlvr.models.loading import load_spec, pin_torch_threads, save_model
from rlvr.models.specs import ModelsParams, checkpoint_names, plan_models
from rlvr.store.atomic import atomic_dir, atomic_file, sweep_debris, write_json
from rlvr.testbed.digits import grade
from rlvr.testbed.grammars import SFT_STYLES, get_grammar
from rlvr.testbed.model import ModelShape, build_model, build_tokenizer
from rlvr.testbed.prompts import load_prompt_file
from rlvr.testbed.split import TaskParams, read_problems
from rlvr.training.evaluation import EvaluateParams, evaluate_model
from rlvr.training.grpo import GRPOParams, train_grpo
from rlvr.training.lm import (
    PretrainParams,
    SFTParams,
    encode_examples,
    self_correct_examples,
    train_lm,
    written_examples,
)


def write_rows(rows: list[dict], path: str | Path) -> None:
    """A list of dicts as CSV (a DVC plot), atomically."""
    with atomic_file(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def save_dir(model, tokenizer, path: str | Path) -> None:
    with atomic_dir(path) as tmp:
        save_model(model, tokenizer, tmp)


def pretrain_base(
    layout: Layout, task: TaskParams, shape: ModelShape, cfg: PretrainParams,
    progress: bool = False,
) -> dict[str, float]:
    """Build a random model over the testbed's vocabulary and train it on `corpus_copies` corpus
    responses per train problem, written by the testbed's grammar."""
    pin_torch_threads()
    grammar = get_grammar(task.testbed)
    problems = read_problems(layout.split("train"))
    sweep_debris(*layout.outputs("pretrain"))
    prompts, responses = [], []
    for copy in range(cfg.corpus_copies):
        prompts += [p.prompt for p in problems]
        responses += grammar.corpus(problems, task.style, cfg.seed * 1000 + copy)
    tokenizer = build_tokenizer(grammar.keywords)
    model = build_model(shape, tokenizer)
    curve = train_lm(model, encode_examples(tokenizer, prompts, responses), cfg,
                     tokenizer.pad_token_id, mask_prompt=False, progress=progress, desc="pretrain")
    save_dir(model, tokenizer, layout.model_dir("base"))
    write_rows(curve, layout.plot("pretrain_loss"))
    return {"final_loss": curve[-1]["loss"], "seconds": curve[-1]["seconds"],
            "n_params": sum(p.numel() for p in model.parameters())}


def _load_base(layout: Layout, stage: str) -> tuple[torch.nn.Module, object]:
    """The base this pipeline built, checked first; then `stage`'s outputs are swept."""
    spec = ModelsParams().spec("base", layout)
    check_model(spec)
    read_problems(layout.split("train"))  # the stage's other input: exists and reads
    sweep_debris(*layout.outputs(stage))
    return load_spec(spec)


def train_rl(layout: Layout, cfg: GRPOParams, progress: bool = False) -> dict[str, float]:
    """GRPO/DAPO from the base model; checkpoints `rl_step_<N>` go under the rl_steps dir."""
    pin_torch_threads()
    model, tokenizer = _load_base(layout, "rl")
    records = load_prompt_file(layout.split("train"), key="")
    # the checkpoint directory is one DVC output: build it whole, then move it into place
    with atomic_dir(layout.rl_steps_dir) as tmp_steps:
        log = train_grpo(model, tokenizer, records, grade, cfg, checkpoint_dir=tmp_steps,
                         progress=progress)
    save_dir(model, tokenizer, layout.model_dir("rl"))
    write_rows(log, layout.plot("rl_log"))
    tail = log[-5:]
    return {"final_reward": sum(r["reward_mean"] for r in tail) / len(tail),
            "seconds": log[-1]["seconds"], "checkpoints": len(checkpoint_names(layout))}


def train_sft(
    layout: Layout, cfg: SFTParams, testbed: str, progress: bool = False
) -> dict[str, float]:
    """SFT control: fine-tune the base on solutions of the train problems written in the
    `sft.data` style by the testbed's grammar."""
    pin_torch_threads()
    model, tokenizer = _load_base(layout, "sft")
    examples = written_examples(tokenizer, read_problems(layout.split("train")),
                                get_grammar(testbed), SFT_STYLES[cfg.data], cfg.seed)
    curve = _fine_tune(model, tokenizer, examples, cfg, layout, "sft", progress)
    return {"final_loss": curve[-1]["loss"], "n_examples": len(examples)}


def _fine_tune(model: torch.nn.Module, tokenizer, examples: list, cfg: SFTParams,
               layout: Layout, name: str, progress: bool) -> list[dict]:
    """The SFT/RFT tail: response-only next-token training, then save the model and its curve."""
    curve = train_lm(model, examples, cfg, tokenizer.pad_token_id, mask_prompt=True,
                     progress=progress, desc=name)
    save_dir(model, tokenizer, layout.model_dir(name))
    write_rows(curve, layout.plot(f"{name}_loss"))
    return curve


def train_rft(layout: Layout, cfg: SFTParams, progress: bool = False) -> dict[str, float]:
    """RFT control: fine-tune the base on its own correct samples of `rft_prompts` problems."""
    pin_torch_threads()
    model, tokenizer = _load_base(layout, "sft")
    problems = read_problems(layout.split("train"))[: cfg.rft_prompts]
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                              seed=cfg.seed)
    examples, kept = self_correct_examples(model, tokenizer, problems, cfg.rft_samples, sampling,
                                           progress=progress)
    if not examples:
        raise ValueError("params.yaml `sft.rft_prompts`: the base model got no RFT sample right; "
                         "raise sft.rft_prompts or sft.rft_samples")
    curve = _fine_tune(model, tokenizer, examples, cfg, layout, "rft", progress)
    return {"final_loss": curve[-1]["loss"], "n_examples": len(examples), "kept_share": kept}


def evaluate_family(
    layout: Layout, cfg: EvaluateParams, models: ModelsParams, progress: bool = False
) -> dict[str, float]:
    """Accuracy of each model in `cfg.models` (and of every RL checkpoint) on the eval split.

    Writes {"<model>": {"accuracy": ..., "n": ..., ...}} to the `models` metrics; checkpoint
    accuracies (with the base as step 0) go to the `rl_checkpoint_accuracy` plot.
    """
    pin_torch_threads()
    entries = plan_models(cfg.models, models, layout, cfg.checkpoints)
    for entry in entries:  # every model checked before the first is evaluated
        check_model(entry.spec)
    problems = load_prompt_file(layout.split("eval"), key="")
    sweep_debris(*layout.outputs("evaluate"))
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                              seed=cfg.seed)
    metrics, steps = {}, []
    for entry in entries:
        model, tokenizer = load_spec(entry.spec)
        result = evaluate_model(model, tokenizer, problems, grade, cfg.n_samples, sampling,
                                progress=progress and entry.kind != "checkpoint",
                                chat_template=entry.spec.chat_template)
        if entry.kind == "checkpoint":
            steps.append({"step": entry.rl_step, "accuracy": result["accuracy"]})
        else:
            metrics[entry.name] = result
    write_json(metrics, layout.metrics("models"))
    if cfg.checkpoints:
        base = [{"step": 0, "accuracy": metrics["base"]["accuracy"]}] if "base" in metrics else []
        write_rows(base + steps, layout.plot("rl_checkpoint_accuracy"))
    return {name: m["accuracy"] for name, m in metrics.items()}
