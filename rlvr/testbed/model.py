"""The toy decoder and word-level tokenizer of the testbed: built here, saved as HF checkpoints.

Everything downstream loads them back through `rlvr.models.loading`, the same path a real 7B
pair takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from rlvr.testbed.digits import KEYWORDS, MAX_NUMBER, SPECIAL_TOKENS

ARCHITECTURES = {"llama": LlamaConfig, "qwen2": Qwen2Config}


@dataclass(frozen=True)
class ModelShape:
    """Shape of a toy decoder; the defaults give a ~0.3M-parameter model."""

    architecture: str = "llama"  # "llama" or "qwen2": both are served by vLLM
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 2  # head_dim 32: the smallest vLLM's CPU attention serves
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

