"""The toy family: the digit-sum testbed, a tiny base pretrained here, its RL sibling and the
SFT and RFT controls, all built on the CPU in minutes.

Its task section is `rlvr.testbed.split.TaskParams` (the problems, their split, the corpus
styles, the response grammar); the base is pretrained on the grammar's corpus (`model`,
`pretrain`); `sft` learns solutions the grammar writes in the `sft.data` style, `rft` the
base's own correct samples. The grader is `toy` (it rejects the `answer ~ N` form on purpose)
and token roles are the grammar's. The library's defaults are this family's.
"""

from __future__ import annotations

from typing import Any

from rlvr.families import Family
from rlvr.generation.sampler import SamplingParams
from rlvr.layout import Layout
from rlvr.models.loading import save_dir
from rlvr.models.specs import ModelSpec
from rlvr.store.atomic import sweep_debris, write_rows
from rlvr.testbed.grammars import SFT_STYLES, get_grammar
from rlvr.testbed.model import ModelShape, build_model, build_tokenizer
from rlvr.testbed.prompts import PromptRecord, load_prompt_file
from rlvr.testbed.split import TaskParams, prepare_split, read_problems
from rlvr.training.lm import (
    Example,
    PretrainParams,
    SFTParams,
    encode_examples,
    self_correct_examples,
    solution_examples,
    train_lm,
)


def pretrain_base(layout: Layout, task: TaskParams, sections: dict[str, Any],
                  progress: bool = False) -> dict[str, float]:
    """A random model over the testbed's vocabulary, trained on `corpus_copies` corpus responses
    per train problem written by the testbed's grammar (loss on every token)."""
    shape: ModelShape = sections["model"]
    cfg: PretrainParams = sections["pretrain"]
    grammar = get_grammar(task.testbed)
    problems = read_problems(layout.split("train"))
    sweep_debris(layout.model_dir("base"), layout.plot("pretrain_loss"))
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


def written_examples(layout: Layout, task: TaskParams, cfg: SFTParams, model, tokenizer,
                     spec: ModelSpec, grade, progress: bool = False) -> list[Example]:
    """sft's data: one solution per train problem, written by the grammar in `sft.data` style."""
    problems = read_problems(layout.split("train"))
    records = [PromptRecord(p.prompt_id, p.prompt, str(p.answer)) for p in problems]
    solutions = get_grammar(task.testbed).corpus(problems, SFT_STYLES[cfg.data], cfg.seed)
    return solution_examples(tokenizer, records, solutions, spec.chat_template)


def own_correct_examples(layout: Layout, task: TaskParams, cfg: SFTParams, model, tokenizer,
                         spec: ModelSpec, grade, progress: bool = False) -> list[Example]:
    """rft's data: the base's own correct samples of the first `sft.rft_prompts` problems."""
    records = load_prompt_file(layout.split("train"), key="")[: cfg.rft_prompts]
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                              seed=cfg.seed)
    examples, _ = self_correct_examples(model, tokenizer, records, cfg.rft_samples, sampling,
                                        grade, spec.chat_template, progress=progress)
    return examples


def describe(record: PromptRecord, text: str) -> dict[str, bool]:
    """How a response went about the task: its method, whether it checks, its answer format."""
    words = text.split()
    return {"chain": words[:1] == ["chain"], "check": words[1:2] == ["check"],
            "eq_format": "answer =" in text}


def _prepare(layout: Layout, task: TaskParams) -> dict[str, int]:
    return prepare_split(task, layout)


FAMILY = Family(
    name="toy",
    summary="the digit-sum testbed: a tiny base pretrained here, RL, SFT and RFT controls",
    task=TaskParams,
    prepare=_prepare,
    grader=lambda task: "toy",
    labeller=lambda task: get_grammar(task.testbed).label_roles,
    build_base=pretrain_base,
    base_sections={"model": ModelShape, "pretrain": PretrainParams},
    base_outputs=("pretrain_loss",),
    base_splits=("train",),
    trains_rl=True,
    controls={"sft": written_examples, "rft": own_correct_examples},
    describe=describe,
)
