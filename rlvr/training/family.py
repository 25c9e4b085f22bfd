"""The family stages over any family: its prompts, its base, the RL model, the controls.

Each function checks its inputs before it touches an output, writes atomically under the layout,
and returns a small summary; the Prefect tasks wrap them one to one. What differs between
families (how the base is made, what the controls train on, the grader) comes from the
`rlvr.families.Family`; the training itself is the project's own (`train_grpo`, `train_lm`).
"""

from __future__ import annotations

from typing import Any

from rlvr.families import Family
from rlvr.layout import Layout
from rlvr.models.checks import check_model
from rlvr.models.loading import load_spec, pin_torch_threads, save_dir
from rlvr.models.specs import ModelsParams, ModelSpec, checkpoint_names
from rlvr.store.atomic import atomic_dir, sweep_debris, write_json, write_rows
from rlvr.testbed.graders import get_grader
from rlvr.testbed.prompts import PromptRecord, load_prompt_file
from rlvr.training.grpo import GRPOParams, freeze_layers, train_grpo
from rlvr.training.lm import SFTParams, train_lm


def stage_outputs(family: Family, layout: Layout, stage: str) -> list:
    """What family stage `stage` (base, rl, sft) writes: what it may sweep."""
    if stage == "base":
        return [layout.model_dir("base"), *(layout.plot(n) if n.endswith("_loss") else
                                            layout.metrics(n) for n in family.base_outputs)]
    if stage == "rl":
        return [layout.model_dir("rl"), layout.rl_steps_dir, layout.plot("rl_log")]
    return [p for name in family.controls
            for p in (layout.model_dir(name), layout.plot(f"{name}_loss"))]


def prepare(family: Family, layout: Layout, task: Any) -> dict[str, int]:
    """The family's eval (and train) split under data/task/, and their sizes as the `task`
    metrics."""
    counts = family.prepare(layout, task)
    write_json(counts, layout.metrics("task"))
    return counts


def build_base(family: Family, layout: Layout, task: Any, sections: dict[str, Any],
               progress: bool = False) -> dict:
    """The family's base model (pretrained or converted) into data/models/base."""
    assert family.build_base is not None, f"the {family.name} family's base is given, not built"
    pin_torch_threads()
    return family.build_base(layout, task, sections, progress=progress)


def _base(layout: Layout, models: ModelsParams, family: Family, stage: str,
          ) -> tuple[ModelSpec, list[PromptRecord]]:
    """The base and the train split, both checked, then `stage`'s outputs swept."""
    spec = models.spec("base", layout)
    check_model(spec)
    records = load_prompt_file(layout.split("train"), key="")
    sweep_debris(*stage_outputs(family, layout, stage))
    return spec, records


def train_rl(family: Family, layout: Layout, cfg: GRPOParams, models: ModelsParams,
             grader: str, progress: bool = False) -> dict[str, float]:
    """GRPO/DAPO from the base on the train split, graded by `grader`; checkpoints
    `rl_step_<N>` go under the rl_steps directory."""
    pin_torch_threads(cfg.threads)
    grade = get_grader(grader, "task.grader")
    spec, records = _base(layout, models, family, "rl")
    model, tokenizer = load_spec(spec)
    # the checkpoint directory is one DVC output: build it whole, then move it into place
    with atomic_dir(layout.rl_steps_dir) as tmp_steps:
        log = train_grpo(model, tokenizer, records, grade, cfg, checkpoint_dir=tmp_steps,
                         progress=progress, chat_template=spec.chat_template)
    save_dir(model, tokenizer, layout.model_dir("rl"))
    write_rows(log, layout.plot("rl_log"))
    tail = log[-5:]
    return {"final_reward": sum(r["reward_mean"] for r in tail) / len(tail),
            "seconds": log[-1]["seconds"], "checkpoints": len(checkpoint_names(layout))}


def train_control(family: Family, layout: Layout, name: str, task: Any, cfg: SFTParams,
                  models: ModelsParams, grader: str, progress: bool = False) -> dict[str, float]:
    """Control `name` (e.g. sft, rft): the base fine-tuned by next-token loss on the responses
    the family makes for it (loss on response tokens only)."""
    pin_torch_threads(cfg.threads)
    spec, records = _base(layout, models, family, "sft")
    model, tokenizer = load_spec(spec)
    examples = family.controls[name](layout, task, cfg, model, tokenizer, spec,
                                     get_grader(grader, "task.grader"), progress=progress)
    if not examples:
        raise ValueError(f"params.yaml `sft`: the {name} control has no training example "
                         "(e.g. the base got no sample right); raise sft.rft_prompts or "
                         "sft.rft_samples")
    freeze_layers(model, cfg.trainable_layers)
    curve = train_lm(model, examples, cfg, tokenizer.pad_token_id, mask_prompt=True,
                     progress=progress, desc=name)
    save_dir(model, tokenizer, layout.model_dir(name))
    write_rows(curve, layout.plot(f"{name}_loss"))
    return {"final_loss": curve[-1]["loss"], "n_examples": len(examples),
            "seconds": curve[-1]["seconds"]}
