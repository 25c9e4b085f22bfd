"""What a stage checks of its models and prompts before it clears a marker or writes a byte.

`check_model` reads a checkpoint's files without building the model: the directory, config.json
and tokenizer load; every weight file is whole (a safetensors header that covers the file) and
holds only finite numbers; every tensor has the shape config.json implies (the architecture is
built on the meta device, which allocates nothing, and its parameter shapes are compared with
the files' headers: a `vocab_size` that disagrees with the head is named here, not as a
transformers traceback at load); the tokenizer fits the output head. `check_pair` adds what scoring
and cross-sampling need of two models: one vocabulary and output heads of one size.
`fit_prompts` checks the prompts a stage asks against every model (vocabulary, context length):
one that does not fit stops the run, or is dropped with a count when params.yaml says so. Each
error
is one line naming where the path came from (its params.yaml key, or the stage that builds the
model), the file, what is wrong and the fix. The weight scan reads every tensor once; its pass
is cached per file (`checked_once`), so a 7B checkpoint is scanned once, not at every stage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from rlvr.models.loading import check_model_dir, check_same_vocab, is_hub_id
from rlvr.models.specs import ModelSpec
from rlvr.store.hashing import checked_once
from rlvr.testbed.prompts import PromptRecord, encode_prompts


@dataclass(frozen=True)
class ModelFacts:
    """What stages need to know of a checked model, read without loading its weights."""

    spec: ModelSpec
    tokenizer: PreTrainedTokenizerBase
    vocab_size: int  # rows of the output head (config.json `vocab_size`)
    context: int  # positions a prompt + response may take; 0 when the config does not say


def _where(spec: ModelSpec) -> str:
    return f"params.yaml `{spec.path_key}`" if spec.path_key else f"model `{spec.name}`"


def _fix(spec: ModelSpec) -> str:
    if spec.built_by:
        return f"restore it (dvc checkout {spec.path}) or rebuild it (dvc repro {spec.built_by})"
    return "point the key at a whole, local Hugging Face model directory"


class ModelError(ValueError):
    """A model that cannot serve a stage; the message is one line naming where it came from."""

    def __init__(self, spec: ModelSpec, problem: str, fix: str | None = None) -> None:
        super().__init__(f"{_where(spec)}: {problem}; {fix or _fix(spec)}")


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


def _config(spec: ModelSpec) -> PretrainedConfig:
    try:
        return AutoConfig.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as err:  # bad JSON, unknown model_type, hub id not cached
        problem = f"cannot read the config of {spec.path} ({_first_line(err)})"
        raise ModelError(spec, problem) from None


def _tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code)
    except Exception as err:  # tokenizer loaders raise whatever their backend does (KeyError..)
        problem = f"cannot load the tokenizer in {spec.path} ({_first_line(err)})"
        raise ModelError(spec, problem) from None


def weight_files(path: Path) -> list[Path]:
    """The checkpoint's weight files as transformers would load them: safetensors when any exist
    (every shard its index lists), else PyTorch `.bin` files."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        return sorted({path / f for f in json.loads(index.read_text())["weight_map"].values()})
    return sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))


def _scan(file: Path) -> None:
    """Raise ValueError unless `file` is a whole weight file of finite numbers."""
    if file.suffix == ".safetensors":
        try:
            with safe_open(file, "pt") as f:
                tensors = ((name, f.get_tensor(name)) for name in f.keys())
                _check_finite(file, tensors)
        except SafetensorError as err:
            raise ValueError(f"{file} is truncated or corrupt ({_first_line(err)})") from None
        return
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{file} is truncated or corrupt ({_first_line(err)})") from None
    _check_finite(file, state.items())


def _check_finite(file: Path, tensors) -> None:
    for name, t in tensors:
        if t.is_floating_point() and not torch.isfinite(t).all():
            kind = "NaN" if torch.isnan(t).any() else "inf"
            raise ValueError(f"{file}: tensor `{name}` holds {kind} values (a diverged or "
                             "corrupted checkpoint)")


def _shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a weight file, from its header (safetensors) or a memory map."""
    if file.suffix == ".safetensors":
        with safe_open(file, "pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    return {name: tuple(t.shape) for name, t in state.items()}


# config.json fields that size tensors, shown when a shape disagrees
SIZE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "intermediate_size")


def check_shapes(spec: ModelSpec, config: PretrainedConfig, files: Sequence[Path]) -> None:
    """Stop unless every tensor the architecture of `config` has is in `files` with the shape
    config.json implies (tied ones may be left out, as save_pretrained does)."""
    if getattr(config, "quantization_config", None):  # packed tensors: shapes differ by design
        return
    try:
        with torch.device("meta"):  # no memory: shapes only
            model = AutoModelForCausalLM.from_config(
                config, trust_remote_code=spec.trust_remote_code)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ModelError(spec, f"cannot build the architecture its config.json describes "
                         f"({_first_line(err)})", "use the config.json saved with these "
                         "weights") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: (file, shape) for file in files for name, shape in _shapes(file).items()}
    prefix = model.base_model_prefix  # a bare body's checkpoint: transformers adds the prefix
    if prefix and found and not set(found) & set(expected):
        found = {f"{prefix}.{name}": v for name, v in found.items()}
    sizes = ", ".join(f"{k} {getattr(config, k)}" for k in SIZE_FIELDS
                      if getattr(config, k, None) is not None)
    fix = "use the config.json saved with these weights"
    for name, shape in expected.items():
        if name not in found:
            if name in model.all_tied_weights_keys:
                continue
            raise ModelError(spec, f"no weight file holds tensor `{name}` {list(shape)}, which "
                             f"its config.json ({sizes}) asks for", fix)
        file, got = found[name]
        if got != shape:
            raise ModelError(spec, f"tensor `{name}` in {file} has shape {list(got)} but its "
                             f"config.json ({sizes}) implies {list(shape)}", fix)


def check_model(spec: ModelSpec) -> ModelFacts:
    """Check everything of `spec`'s checkpoint a stage relies on, without building the model."""
    check_model_dir(spec.path, made_by=spec.built_by, key=spec.path_key)
    config, tokenizer = _config(spec), _tokenizer(spec)
    if not is_hub_id(spec.path):  # a hub id's files are fetched (and checked) at load time
        files = weight_files(Path(spec.path))
        if not files:
            raise ModelError(spec, f"no weights in {spec.path} (no *.safetensors or *.bin)")
        for file in files:
            if not file.exists():
                raise ModelError(spec, f"{file} is missing (listed in the weights index)")
            try:
                checked_once(file, "weights-finite", _scan)
            except ValueError as err:
                raise ModelError(spec, str(err)) from None
        check_shapes(spec, config, files)
    if len(tokenizer) > config.vocab_size:
        raise ModelError(spec, f"its tokenizer has {len(tokenizer)} tokens but its output head "
                         f"only {config.vocab_size} rows (config.json vocab_size)",
                         "use the tokenizer saved with these weights")
    # Llama/Qwen2/Mistral configs name the context max_position_embeddings; others (GPT-2's
    # n_positions) leave it to `models.max_model_len`
    positions = getattr(config, "max_position_embeddings", 0) or 0
    return ModelFacts(spec, tokenizer, config.vocab_size, spec.max_model_len or positions)


def check_pair(base: ModelFacts, tuned: ModelFacts) -> None:
    """Stop unless two checked models can be compared token by token: the same vocabulary
    (token for token) and output heads of the same size."""
    try:
        check_same_vocab(base.tokenizer, tuned.tokenizer, base.spec.path, tuned.spec.path)
    except ValueError as err:
        raise ModelError(tuned.spec, str(err), "pair models saved with one tokenizer") from None
    if base.vocab_size != tuned.vocab_size:
        raise ModelError(
            tuned.spec, f"its output head has {tuned.vocab_size} rows but the head of "
            f"`{base.spec.name}` ({base.spec.path}) has {base.vocab_size} (a padded or resized "
            "embedding?)", "the models of a pair need output heads of one size: use checkpoints "
            "saved with the same vocabulary")


def _unknown_words(prompt: str, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    return [prompt[a:b] for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
            if i == tokenizer.unk_token_id]


def prompt_problem(ids: list[int], prompt: str, facts: ModelFacts, max_new_tokens: int) -> str:
    """Why model `facts` cannot be asked this prompt (its encoding `ids`), or "" if it can:
    words outside its vocabulary (read as unknown), or more positions than it has."""
    spec, tok = facts.spec, facts.tokenizer
    if tok.unk_token_id is not None and tok.unk_token_id in ids:
        words = _unknown_words(prompt, tok) if tok.is_fast else []
        return (f"{', '.join(map(repr, words)) or 'some words'} not in the vocabulary of model "
                f"`{spec.name}` (read as {tok.unk_token})")
    if facts.context and len(ids) + max_new_tokens > facts.context:
        return (f"{len(ids)} prompt tokens + {max_new_tokens} new tokens exceed the "
                f"{facts.context} positions of model `{spec.name}`")
    if spec.max_prompt_tokens and len(ids) > spec.max_prompt_tokens:
        return (f"{len(ids)} prompt tokens exceed `{spec.key}.max_prompt_tokens` = "
                f"{spec.max_prompt_tokens}")
    return ""


def fit_prompts(
    records: Sequence[PromptRecord], facts: Sequence[ModelFacts], max_new_tokens: int,
    drop: bool, where: str, policy_key: str,
) -> tuple[list[PromptRecord], int]:
    """The prompts every model of `facts` can be asked, and how many were dropped.

    A prompt that does not fit one model (see `prompt_problem`) stops the run with one line
    naming `where` (the file, and the params key that names it), the row and the reason, unless
    `drop`, which the params key `policy_key` sets; then it is skipped for every model, so all
    models answer the same prompts.
    """
    problems: dict[int, str] = {}
    for f in facts:
        ids = encode_prompts(records, f.tokenizer, f.spec.chat_template)
        for i, (r, row) in enumerate(zip(records, ids, strict=True)):
            if i not in problems and (problem := prompt_problem(row, r.prompt, f, max_new_tokens)):
                problems[i] = problem
    if problems and not drop:
        i = min(problems)
        raise ValueError(
            f"{where} row {i + 1} (prompt_id {records[i].prompt_id!r}): {problems[i]}; fix the "
            f"prompt, or set `{policy_key}: drop` to skip the {len(problems)} of {len(records)} "
            "prompts that do not fit")
    kept = [r for i, r in enumerate(records) if i not in problems]
    if not kept:
        raise ValueError(f"{where}: none of the {len(records)} prompts fits the models "
                         f"(row 1: {problems[0]}); fix the prompts")
    return kept, len(problems)
