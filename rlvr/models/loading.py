"""Causal-LM checkpoints on disk: save a Hugging Face directory, check it, and load it back.

Every model of a run, the toy family and a real 7B pair alike, loads through `load_model`
(`AutoModelForCausalLM` / `AutoTokenizer`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)


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
