"""The toy decoder and word-level tokenizer of the testbed: built here, saved as HF checkpoints.

Everything downstream loads them back through `rlvr.models.loading`, the same path a real 7B
pair takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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

from rlvr.config import require
from rlvr.testbed.digits import KEYWORDS, MAX_NUMBER, SPECIAL_TOKENS

ARCHITECTURES = {"llama": LlamaConfig, "qwen2": Qwen2Config}


@dataclass(frozen=True)
class ModelShape:
    """`model`: the toy decoder every model of the family shares, and its init seed."""

    architecture: Literal["llama", "qwen2"] = "llama"  # both are served by vLLM
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 2  # head_dim 32: the smallest vLLM's CPU attention serves
    intermediate_size: int = 256
    max_length: int = 80  # prompt + response tokens (steps testbed: up to ~9 + 64)
    seed: int = 0  # weight initialisation

    def __post_init__(self) -> None:
        for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length"):
            require(getattr(self, key) > 0, key, "must be positive", "use an integer >= 1")
        require(self.hidden_size % self.num_heads == 0, "hidden_size",
                f"{self.hidden_size} is not divisible by num_heads={self.num_heads}",
                "make hidden_size a multiple of num_heads")


def build_tokenizer(keywords: Sequence[str] = tuple(KEYWORDS)) -> PreTrainedTokenizerFast:
    """A word-level tokenizer for a testbed: specials, its `keywords` (the terse testbed's by
    default), and the numbers 0..MAX_NUMBER."""
    vocab = SPECIAL_TOKENS + list(keywords) + [str(i) for i in range(MAX_NUMBER + 1)]
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
    shape: ModelShape, tokenizer: PreTrainedTokenizerBase, seed: int | None = None
) -> PreTrainedModel:
    """A randomly initialised causal LM of `shape` over `tokenizer`'s vocabulary (init seed:
    `seed`, else the shape's)."""
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
    torch.manual_seed(shape.seed if seed is None else seed)
    return AutoModelForCausalLM.from_config(config)

