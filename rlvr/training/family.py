"""The toy model family, stage by stage: base pretraining, RL, SFT/RFT controls, evaluation.

Each function reads its inputs from paths, writes its outputs atomically to the paths it is
given, and returns a small summary; the Prefect tasks of the stages wrap them one to one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import torch

from rlvr.config import EvaluateConfig, ModelConfig, PretrainConfig, RLConfig, SFTConfig, TaskConfig
from rlvr.generation.sampler import SamplingParams
from rlvr.models.loading import load_model, save_model
from rlvr.store.atomic import atomic_dir, atomic_file, write_json
from rlvr.testbed.digits import CorpusStyle, make_corpus
from rlvr.testbed.model import ModelShape, build_model, build_tokenizer
from rlvr.testbed.split import read_problems
from rlvr.training.evaluation import evaluate_model
from rlvr.training.grpo import GRPOParams, list_checkpoints, train_grpo
from rlvr.training.lm import (
    LMParams,
    encode_examples,
    reference_examples,
    self_correct_examples,
    train_lm,
)

MADE_BY = {"base": "pretrain", "rl": "rl", "sft": "sft", "rft": "sft"}  # model -> DVC stage


def use_one_thread() -> None:
    """Run torch single-threaded: the toy models are tiny, and on a shared 2-core machine a
    second intra-op thread spin-waits (measured: 4.4 s vs 0.29 s per pretraining step)."""
    torch.set_num_threads(1)



def write_rows(rows: list[dict], path: str | Path) -> None:
    """A list of dicts as CSV (a DVC plot), atomically."""
    with atomic_file(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def save_dir(model, tokenizer, path: str | Path) -> None:
    with atomic_dir(path) as tmp:
        save_model(model, tokenizer, tmp)


def pretrain_base(
    train_path: str | Path,
    out_dir: str | Path,
    loss_path: str | Path,
    task: TaskConfig,
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    progress: bool = False,
) -> dict[str, float]:
    """Build a random model and train it on `corpus_copies` corpus responses per train problem."""
    use_one_thread()
    problems = read_problems(train_path)
    style = CorpusStyle(task.p_chain, task.slip_chain, task.slip_pairs, task.slip_pairs_total,
                        task.p_bad_format)
    prompts, responses = [], []
    for copy in range(cfg.corpus_copies):
        for problem, text in zip(problems, make_corpus(problems, style, cfg.seed * 1000 + copy),
                                 strict=True):
            prompts.append(problem.prompt)
            responses.append(text[len(problem.prompt) + 1 :])
    tokenizer = build_tokenizer()
    shape = ModelShape(model_cfg.architecture, model_cfg.hidden_size, model_cfg.num_layers,
                       model_cfg.num_heads, model_cfg.intermediate_size, model_cfg.max_length)
    model = build_model(shape, tokenizer, model_cfg.seed)
    params = LMParams(cfg.steps, cfg.batch_size, cfg.lr, cfg.warmup_steps, cfg.weight_decay,
                      seed=cfg.seed, log_every=cfg.log_every)
    curve = train_lm(model, encode_examples(tokenizer, prompts, responses), params,
                     tokenizer.pad_token_id, mask_prompt=False, progress=progress, desc="pretrain")
    save_dir(model, tokenizer, out_dir)
    write_rows(curve, loss_path)
    return {"final_loss": curve[-1]["loss"], "seconds": curve[-1]["seconds"],
            "n_params": sum(p.numel() for p in model.parameters())}


def grpo_params(cfg: RLConfig) -> GRPOParams:
    """The trainer's knobs from the `rl` section (every GRPOParams field has an `rl` twin)."""
    return GRPOParams(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(GRPOParams)})


def train_rl(
    base_dir: str | Path,
    train_path: str | Path,
    out_dir: str | Path,
    steps_dir: str | Path,
    log_path: str | Path,
    cfg: RLConfig,
    progress: bool = False,
) -> dict[str, float]:
    """GRPO/DAPO from the base model; checkpoints `rl_step_<N>` go under `steps_dir`."""
    use_one_thread()
    model, tokenizer = load_model(base_dir, made_by=MADE_BY["base"])
    problems = read_problems(train_path)
    # the checkpoint directory is one DVC output: build it whole, then move it into place
    with atomic_dir(steps_dir) as tmp_steps:
        log = train_grpo(model, tokenizer, problems, grpo_params(cfg),
                         need_reference=cfg.track_kl, checkpoint_dir=tmp_steps, progress=progress)
    save_dir(model, tokenizer, out_dir)
    write_rows(log, log_path)
    tail = log[-5:]
    return {"final_reward": sum(r["reward_mean"] for r in tail) / len(tail),
            "seconds": log[-1]["seconds"], "checkpoints": len(list_checkpoints(steps_dir))}


def train_sft(
    base_dir: str | Path,
    train_path: str | Path,
    out_dir: str | Path,
    loss_path: str | Path,
    cfg: SFTConfig,
    progress: bool = False,
) -> dict[str, float]:
    """SFT control: fine-tune the base on reference solutions of the train problems."""
    use_one_thread()
    model, tokenizer = load_model(base_dir, made_by=MADE_BY["base"])
    examples = reference_examples(tokenizer, read_problems(train_path), cfg.seed)
    curve = _fine_tune(model, tokenizer, examples, cfg, out_dir, loss_path, progress, "sft")
    return {"final_loss": curve[-1]["loss"], "n_examples": len(examples)}


def _fine_tune(model: torch.nn.Module, tokenizer, examples: list, cfg: SFTConfig,
               out_dir: str | Path, loss_path: str | Path, progress: bool, desc: str) -> list[dict]:
    """The SFT/RFT tail: response-only next-token training, then save the model and its curve."""
    curve = train_lm(model, examples, sft_params(cfg), tokenizer.pad_token_id, mask_prompt=True,
                     progress=progress, desc=desc)
    save_dir(model, tokenizer, out_dir)
    write_rows(curve, loss_path)
    return curve


def sft_params(cfg: SFTConfig) -> LMParams:
    return LMParams(cfg.steps, cfg.batch_size, cfg.lr, 0, cfg.weight_decay, seed=cfg.seed,
                    log_every=max(1, cfg.steps // 20))


def train_rft(
    base_dir: str | Path,
    train_path: str | Path,
    out_dir: str | Path,
    loss_path: str | Path,
    cfg: SFTConfig,
    progress: bool = False,
) -> dict[str, float]:
    """RFT control: fine-tune the base on its own correct samples of `rft_prompts` problems."""
    use_one_thread()
    model, tokenizer = load_model(base_dir, made_by=MADE_BY["base"])
    problems = read_problems(train_path)[: cfg.rft_prompts]
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                              seed=cfg.seed)
    examples, kept = self_correct_examples(model, tokenizer, problems, cfg.rft_samples, sampling,
                                           progress=progress)
    if not examples:
        raise ValueError("sft: the base model got no RFT sample right; raise sft.rft_prompts or "
                         "sft.rft_samples in params.yaml")
    curve = _fine_tune(model, tokenizer, examples, cfg, out_dir, loss_path, progress, "rft")
    return {"final_loss": curve[-1]["loss"], "n_examples": len(examples), "kept_share": kept}


def evaluate_family(
    models_root: str | Path,
    eval_path: str | Path,
    metrics_path: str | Path,
    cfg: EvaluateConfig,
    checkpoints_dir: str | Path | None = None,
    checkpoint_plot: str | Path | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Accuracy of each model in `cfg.models` (and of every RL checkpoint) on the eval split.

    Writes {"<model>": {"accuracy": ..., "n": ..., ...}} to `metrics_path`; checkpoint
    accuracies (with the base as step 0 and the final RL model) go to `checkpoint_plot`.
    """
    use_one_thread()
    problems = read_problems(eval_path)
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                              seed=cfg.seed)
    metrics = {}
    for name in cfg.models:
        model, tokenizer = load_model(Path(models_root) / name, made_by=MADE_BY.get(name, ""))
        metrics[name] = evaluate_model(model, tokenizer, problems, cfg.n_samples, sampling,
                                       progress=progress)
    write_json(metrics, metrics_path)
    if cfg.checkpoints and checkpoints_dir is not None and checkpoint_plot is not None:
        rows = [{"step": 0, "accuracy": metrics["base"]["accuracy"]}] if "base" in metrics else []
        for step, path in list_checkpoints(checkpoints_dir):
            model, tokenizer = load_model(path, made_by="rl")
            result = evaluate_model(model, tokenizer, problems, cfg.n_samples, sampling)
            rows.append({"step": step, "accuracy": result["accuracy"]})
        write_rows(rows, checkpoint_plot)
    return {name: m["accuracy"] for name, m in metrics.items()}
