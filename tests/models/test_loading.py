"""Tokenizer and checkpoints: round trips, identical logits after save/load, clear load errors."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlvr.models.loading import load_model, save_model
from rlvr.testbed.digits import CorpusStyle, make_corpus, make_split
from rlvr.testbed.model import ModelShape, build_model, build_tokenizer


def test_tokenizer_round_trip_on_corpus_text(tokenizer):
    train, _ = make_split(200, 10, 0, 4, 7)
    for text in make_corpus(train, CorpusStyle(), seed=0):
        ids = tokenizer(text).input_ids
        assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
        # one token per word: the labeller's roles line up with token positions
        assert tokenizer.convert_ids_to_tokens(ids[1:]) == text.split()


def test_tokenizer_survives_save_and_auto_load(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "sum 9 9 9 9 : chain 9 18 27 36 ; answer = 36"
    assert loaded(text).input_ids == tokenizer(text).input_ids
    assert loaded.pad_token_id == tokenizer.pad_token_id
    assert loaded.eos_token_id == tokenizer.eos_token_id


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_save_load_gives_identical_logits(tmp_path, tokenizer, architecture):
    shape = ModelShape(architecture=architecture, hidden_size=16, num_layers=2, num_heads=2,
                       intermediate_size=32, max_length=32)
    model = build_model(shape, tokenizer, seed=3).eval()
    save_model(model, tokenizer, tmp_path)
    loaded, loaded_tok = load_model(tmp_path, made_by="pretrain")
    auto = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([tokenizer("sum 1 2 3 : chain 1 3 6 ; answer = 6").input_ids])
    with torch.no_grad():
        want = model(input_ids=ids).logits
        assert torch.equal(loaded(input_ids=ids).logits, want)
        assert torch.equal(auto(input_ids=ids).logits, want)
    assert len(loaded_tok) == len(tokenizer)


def test_missing_model_directory_names_path_and_stage(tmp_path):
    missing = tmp_path / "models" / "base"
    with pytest.raises(FileNotFoundError) as err:
        load_model(missing, made_by="pretrain")
    assert str(missing) in str(err.value) and "dvc repro pretrain" in str(err.value)


def test_build_tokenizer_is_deterministic():
    assert build_tokenizer().get_vocab() == build_tokenizer().get_vocab()
