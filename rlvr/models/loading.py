"""Causal-LM checkpoints on disk: save a Hugging Face directory, check it, and load it back.

Every model of a run, the toy family and a real 7B pair alike, loads through `load_model`
(`AutoModelForCausalLM` / `AutoTokenizer`); stages load a resolved `ModelSpec` with
`load_spec`. The checks here run before weights load (directory, tokenizer, shared vocabulary,
prompt lengths) or right after (the output head the chunked scorer relies on).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlvr.models.specs import LOAD_LOCK, ModelSpec
from rlvr.store.atomic import atomic_dir


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path
) -> None:
    """Save model and tokenizer as one Hugging Face directory (safetensors)."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def save_dir(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> None:
    """`save_model` into a temporary directory, then renamed onto `path` (atomic)."""
    with atomic_dir(path) as tmp:
        save_model(model, tokenizer, tmp)


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


def pin_torch_threads(threads: int = 1) -> None:
    """Fix torch's intra-op thread count: float results depend on it (measured: sampled
    log-probs differ in their last bits between 1 and 2 threads), so sharded stages run one
    thread per task and parallelise across tasks, and a stage that is one task (rl, sft) takes
    its count from its params (`threads`), never from the machine. Results are then the same
    on any runner (threads, Dask or Ray workers), machine and load."""
    torch.set_num_threads(threads)


def load_spec(spec: ModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the model and tokenizer a spec names (one load at a time: see `LOAD_LOCK`)."""
    with LOAD_LOCK:
        return load_model(spec.path, made_by=spec.built_by, dtype=spec.dtype, device=spec.device,
                          trust_remote_code=spec.trust_remote_code, key=spec.path_key)


def load_tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase:
    """The tokenizer of a spec's model, without its weights; errors name the spec's key."""
    check_model_dir(spec.path, made_by=spec.built_by, key=spec.path_key)
    return AutoTokenizer.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code)


def check_same_vocab(
    tok_base: PreTrainedTokenizerBase, tok_tuned: PreTrainedTokenizerBase,
    path_base: str | Path, path_tuned: str | Path,
) -> None:
    """Raise ValueError naming both tokenizer paths and the first id whose token differs."""
    va = {i: t for t, i in tok_base.get_vocab().items()}
    vb = {i: t for t, i in tok_tuned.get_vocab().items()}
    for i in range(max(len(va), len(vb), max(va, default=0) + 1, max(vb, default=0) + 1)):
        if va.get(i) != vb.get(i):
            raise ValueError(
                f"models of a pair must share a vocabulary, but the tokenizers at {path_base} and "
                f"{path_tuned} differ first at id {i}: {va.get(i)!r} vs {vb.get(i)!r}"
            )


def check_pair(base: ModelSpec, tuned: ModelSpec) -> PreTrainedTokenizerBase:
    """Stop before any weights load unless both models exist and share one vocabulary.

    Returns the base tokenizer (the pair's).
    """
    tok_base, tok_tuned = load_tokenizer(base), load_tokenizer(tuned)
    check_same_vocab(tok_base, tok_tuned, base.path, tuned.path)
    return tok_base


def check_lengths(prompts: Sequence[Sequence[int]], max_new_tokens: int, spec: ModelSpec) -> None:
    """Stop before generating when a prompt or prompt + response exceeds the spec's limits."""
    longest = max((len(p) for p in prompts), default=0)
    if spec.max_prompt_tokens and longest > spec.max_prompt_tokens:
        row = next(i for i, p in enumerate(prompts) if len(p) == longest)
        raise ValueError(
            f"params.yaml `{spec.key}.max_prompt_tokens`: prompt row {row} has {longest} tokens "
            f"> {spec.max_prompt_tokens}; raise the limit or shorten the prompts"
        )
    if spec.max_model_len and longest + max_new_tokens > spec.max_model_len:
        raise ValueError(
            f"params.yaml `{spec.key}.max_model_len`: the longest prompt ({longest} tokens) plus "
            f"{max_new_tokens} new tokens exceeds {spec.max_model_len}; raise max_model_len or "
            "lower max_new_tokens"
        )


# relative agreement of the model's own logits with head(last hidden) that `check_head` asks:
# the model computes its head in its own dtype, the scorer in fp32 from the same hidden states
HEAD_TOLERANCE = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}


@torch.no_grad()
def check_head(model: PreTrainedModel, path: str | Path) -> None:
    """Check that logits == output head(last hidden state), which the chunked scorer relies on.

    The tolerance follows the model's dtype (relative to the largest logit): a bf16 model's own
    head rounds to bf16, the scorer's does not; soft-capped or post-processed logits differ by
    far more.
    """
    ids = torch.arange(min(8, model.config.vocab_size), device=model.device).unsqueeze(0)
    full = model(input_ids=ids).logits.float()
    if not torch.isfinite(full).all():
        raise ValueError(f"model at {path}: its logits are not finite (NaN or inf weights?); "
                         "check the checkpoint files")
    hidden = model.get_decoder()(input_ids=ids).last_hidden_state
    head = model.get_output_embeddings()
    bias = None if head.bias is None else head.bias.float()
    mine = F.linear(hidden.float(), head.weight.float(), bias)
    tol = HEAD_TOLERANCE.get(model.dtype, 3e-2) * max(1.0, float(full.abs().max()))
    gap = float((full - mine).abs().max())
    if gap > tol:
        raise ValueError(f"model at {path}: its logits are not its output head applied to the "
                         f"last hidden state (max gap {gap:.3g} > {tol:.3g}: soft-capping or "
                         "logit post-processing?); the chunked scorer cannot score it")
