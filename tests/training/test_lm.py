"""Next-token training: masking, the schedule, loss going down, SFT/RFT data and the stages."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from rlvr.families import get_family
from rlvr.generation.accuracy import evaluate_samples
from rlvr.generation.backends import BackendParams
from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import sample_shard
from rlvr.layout import Layout
from rlvr.models.loading import TOKENIZER_FILES, load_model
from rlvr.models.specs import ModelsParams, plan_models
from rlvr.store.tables import finalize_dataset, part_path, samples_dir
from rlvr.testbed.digits import REFERENCE_STYLE, grade, make_split
from rlvr.testbed.grammars import GRAMMARS, SFT_STYLES
from rlvr.testbed.model import ModelShape, build_model, build_tokenizer
from rlvr.testbed.prompts import load_prompt_file, records_of
from rlvr.testbed.split import TaskParams, prepare_split
from rlvr.training.family import build_base, train_control
from rlvr.training.lm import (
    IGNORE,
    LMParams,
    PretrainParams,
    SFTParams,
    collate,
    encode_examples,
    lr_at,
    self_correct_examples,
    solution_examples,
    train_lm,
)

TOY = get_family("toy")


def written(tokenizer, problems, grammar, style, seed):
    """sft's data: the grammar's solutions in `style` (what the toy family's sft trains on)."""
    return solution_examples(tokenizer, records_of(problems),
                             grammar.corpus(problems, style, seed), chat_template=False)

torch.set_num_threads(1)  # tiny models: a second thread only spin-waits on a shared machine


def test_collate_masks_prompt_and_padding(tokenizer):
    examples = encode_examples(tokenizer, ["sum 1 2 :", "sum 3 4 5 :"],
                               ["chain 1 3 ; answer = 3", "chain 3 7 12 ; answer = 12"])
    assert examples[0].n_prompt == 5  # bos sum 1 2 :
    ids, attn, labels = collate(examples, tokenizer.pad_token_id, mask_prompt=True)
    assert ids.shape == attn.shape == labels.shape == (2, 15)
    assert (labels[0, :5] == IGNORE).all() and (labels[0, 5:13] == ids[0, 5:13]).all()
    assert ids[0, 12] == tokenizer.eos_token_id and (labels[0, 13:] == IGNORE).all()
    assert attn[0].sum() == 13 and attn[1].sum() == 15
    _, _, full = collate(examples, tokenizer.pad_token_id, mask_prompt=False)
    assert full[1, 0] == IGNORE and (full[1, 1:] == ids[1, 1:]).all()  # only bos is skipped


def test_lr_schedule_warms_up_then_decays_to_a_tenth():
    params = LMParams(steps=100, batch_size=1, lr=1.0, warmup_steps=10)
    assert lr_at(0, params) == pytest.approx(0.1) and lr_at(9, params) == pytest.approx(1.0)
    assert lr_at(10, params) == pytest.approx(1.0)
    assert lr_at(100, params) == pytest.approx(0.1)
    values = [lr_at(s, params) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


@pytest.mark.parametrize("testbed", ["digits", "steps"])
@pytest.mark.parametrize("data,method", [("reference", "chain"), ("reverse", "back")])
def test_sft_data_is_written_in_its_style_and_right(testbed, data, method):
    grammar = GRAMMARS[testbed]
    tokenizer = build_tokenizer(grammar.keywords)
    train, _ = make_split(100, 5, 0, 4, 7)
    examples = written(tokenizer, train, grammar, SFT_STYLES[data], 0)
    for example, problem in zip(examples, train, strict=True):
        response = tokenizer.decode(example.ids[example.n_prompt:], skip_special_tokens=True)
        assert response.startswith(method + " ") and "answer =" in response
        assert "<unk>" not in tokenizer.decode(example.ids)  # every word is in the vocabulary
        assert grade(response, problem.answer) == 1
        # steps: the reverse style checks every step (all `ok`: it never slips)
        assert (testbed == "steps" and data == "reverse") == (" check ; " in response + " ")


def test_train_lm_lowers_the_loss_and_rft_keeps_only_right_samples(tokenizer):
    train, _ = make_split(36, 4, 0, 2, 2)
    examples = written(tokenizer, train, GRAMMARS["digits"], REFERENCE_STYLE, 0) * 4
    shape = ModelShape(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       max_length=32)
    model = build_model(shape, tokenizer, seed=0)
    curve = train_lm(model, examples, LMParams(steps=120, batch_size=32, lr=1e-2, log_every=20),
                     tokenizer.pad_token_id, mask_prompt=True)
    assert [row["step"] for row in curve] == [20, 40, 60, 80, 100, 120]
    assert curve[-1]["loss"] < 0.5 * curve[0]["loss"]
    kept, share = self_correct_examples(model, tokenizer, records_of(train), 4,
                                        SamplingParams(max_new_tokens=8, seed=0), grade)
    assert kept and share == len(kept) / (4 * len(train))
    by_prompt = {tuple(tokenizer(p.prompt).input_ids): p for p in train}
    for example in kept:
        problem = by_prompt[tuple(example.ids[: example.n_prompt])]
        text = tokenizer.decode(example.ids[example.n_prompt:], skip_special_tokens=True)
        assert grade(text, problem.answer) == 1
        assert example.ids[-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("testbed", ["digits", "steps"])
def test_family_stages_write_models_curves_and_metrics(tmp_path, testbed):
    """prepare -> base -> sft/rft -> sample -> evaluate on a shrunken config, through the
    layout and the toy family."""
    layout = Layout(tmp_path)
    task = TaskParams(testbed=testbed, n_train=60, n_eval=6, min_digits=2, max_digits=3)
    prepare_split(task, layout)
    split = pd.read_parquet(layout.split("train"))
    assert list(split.columns) == ["prompt_id", "prompt", "answer", "n_digits"]
    assert split["answer"].map(type).eq(str).all()
    shape = ModelShape(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                       max_length=32)
    summary = build_base(TOY, layout, task, {"model": shape, "pretrain": PretrainParams(
        steps=20, batch_size=16, warmup_steps=2, log_every=5)})
    assert summary["n_params"] > 0 and len(pd.read_csv(layout.plot("pretrain_loss"))) == 4
    assert any((layout.model_dir("base") / name).exists() for name in TOKENIZER_FILES)
    tokenizer = load_model(layout.model_dir("base"))[1]
    assert ("check" in tokenizer.get_vocab()) == (testbed == "steps")  # the testbed's words
    sft_cfg = SFTParams(steps=5, batch_size=8, rft_prompts=60, rft_samples=8, max_new_tokens=32)
    train_control(TOY, layout, "sft", task, sft_cfg, ModelsParams(), "toy")
    try:
        train_control(TOY, layout, "rft", task, sft_cfg, ModelsParams(), "toy")
        names = ["base", "sft", "rft"]
    except ValueError as err:  # a 20-step base may get nothing right; the error says what to do
        assert "sft.rft_prompts" in str(err)
        names = ["base", "sft"]
    records, parts = load_prompt_file(layout.split("eval"), key=""), []
    for entry in plan_models(names, ModelsParams(), layout):
        parts.append(part_path(samples_dir(layout.samples_dir, entry.name), 0))
        sample_shard(entry, records, 2, SamplingParams(max_new_tokens=32), "toy",
                     BackendParams(), parts[-1])
    finalize_dataset(layout.samples_dir, parts)
    accuracy = evaluate_samples(layout, TOY.describe)
    metrics = pd.read_json(layout.metrics("models"))
    assert set(metrics.columns) == set(names) and set(accuracy) == set(names)
    assert (metrics.loc["n"] == 12).all() and metrics.loc["accuracy"].between(0, 1).all()
    assert metrics.loc["share_eq_format"].between(0, 1).all()  # the family's traits
    for name in names[1:]:  # each model's gain over the base, paired by prompt
        gain = metrics.loc["gain_over_base", name]
        assert gain["gain"] == pytest.approx(metrics.loc["accuracy", name]
                                             - metrics.loc["accuracy", "base"])
