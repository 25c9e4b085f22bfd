"""Tokenizer and causal-LM checkpoints: build the toy ones, and load any pair from disk.

The toy family uses the same code path as a real 7B pair: `save_pretrained` writes a Hugging Face
directory, and `load_model` reads it back with `AutoModelForCausalLM` / `AutoTokenizer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from rlvr.task import KEYWORDS, MAX_NUMBER, SPECIAL_TOKENS

ARCHITECTURES = {"llama": LlamaConfig, "qwen2": Qwen2Config}


@dataclass(frozen=True)
class ModelShape:
    """Shape of a toy decoder; the defaults give a ~0.3M-parameter model."""

    architecture: str = "llama"  # "llama" or "qwen2": both are served by vLLM
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 256
    max_length: int = 64  # prompt + response tokens


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer for the task: specials, keywords, and the numbers 0..MAX_NUMBER."""
    vocab = SPECIAL_TOKENS + KEYWORDS + [str(i) for i in range(MAX_NUMBER + 1)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bos = vocab.index("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
    )


def build_model(
    shape: ModelShape, tokenizer: PreTrainedTokenizerBase, seed: int
) -> PreTrainedModel:
    """A randomly initialised causal LM of `shape` over `tokenizer`'s vocabulary."""
    if shape.architecture not in ARCHITECTURES:
        raise ValueError(
            f"model.architecture: unknown architecture {shape.architecture!r}; "
            f"use one of {sorted(ARCHITECTURES)} in params.yaml"
        )
    config = ARCHITECTURES[shape.architecture](
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path
) -> None:
    """Save model and tokenizer as one Hugging Face directory (safetensors)."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def load_model(
    path: str | Path,
    made_by: str = "",
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a checkpoint directory; a missing one raises an error naming the stage that makes it."""
    path = Path(path)
    if not (path / "config.json").exists():
        hint = (
            f"run the `{made_by}` stage first (dvc repro {made_by})"
            if made_by
            else ("point params.yaml at a Hugging Face model directory")
        )
        raise FileNotFoundError(f"no model at {path} (config.json missing): {hint}")
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True
    )
    return model.to(device).eval(), tokenizer
