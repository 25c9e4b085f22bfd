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


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path
) -> None:
    """Save model and tokenizer as one Hugging Face directory (safetensors)."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def is_hub_id(path: str | Path) -> bool:
    """True for `org/name` that is not a local path: loadable only with hub access (or a cache)."""
    text = str(path)
    return not Path(text).exists() and text.count("/") == 1 and not text.startswith((".", "/"))


def check_model_dir(path: str | Path, made_by: str = "", key: str = "") -> None:
    """Stop with a message naming `key` (or the stage `made_by`) unless `path` is a local model
    directory with a tokenizer; hub ids pass (they resolve at load time)."""
    if is_hub_id(path):
        return
    where = f"params.yaml `{key}`: " if key else ""
    path = Path(path)
    if not (path / "config.json").exists():
        hint = (
            f"run the `{made_by}` stage first (dvc repro {made_by})"
            if made_by
            else ("point params.yaml at a Hugging Face model directory")
        )
        raise FileNotFoundError(f"{where}no model at {path} (config.json missing): {hint}")
    if not any((path / name).exists() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{where}no tokenizer in {path} (none of {list(TOKENIZER_FILES)}); save the "
            "tokenizer next to the weights (tokenizer.save_pretrained(path))"
        )


def load_model(
    path: str | Path,
    made_by: str = "",
    dtype: torch.dtype | str = torch.float32,
    device: str = "cpu",
    trust_remote_code: bool = False,
    key: str = "",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a checkpoint directory (or hub id); `dtype` may be a torch dtype or fp32/bf16/fp16.

    A missing directory or tokenizer raises an error naming `key` (the params.yaml key the path
    came from) or the stage that makes it. Safetensors weights are preferred; `.bin` weights
    load only where no safetensors exist.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            where = f"params.yaml `{key}`: " if key else ""
            raise ValueError(f"{where}unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
        dtype = DTYPES[dtype]
    check_model_dir(path, made_by, key)
    # hub: transformers picks safetensors when the repo publishes them
    use_safetensors = None if is_hub_id(path) else (any(Path(path).glob("*.safetensors")) or None)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=use_safetensors
    )
    return model.to(device).eval(), tokenizer
