"""Which checkpoint each model name loads, and how: the one resolver of the `models` section.

A name with `models.named.<name>.path` loads that directory (a user's pair, e.g. a 7B base and
its RL sibling, with its `role`); any other name is a model this pipeline built, under the
layout's models directory (`base`, `rl`, `sft`, `rft`, and the RL checkpoints `rl_step_<N>`).
Every stage that loads a model (sample, score, cross_sample, decisive, weighted, the report's
token viewer, and the training stages for their base) resolves it here, so dtype, device,
lengths, chat template and `trust_remote_code` mean the same everywhere.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rlvr.config import require
from rlvr.layout import CHECKPOINT_PREFIX, Layout
from rlvr.store.hashing import content_hash

Dtype = Literal["fp32", "bf16", "fp16"]
FAMILY_KINDS = {"base": "base", "rl": "rl", "sft": "sft", "rft": "rft"}
BUILT_BY = {"base": "base", "rl": "rl", "sft": "sft", "rft": "sft"}  # model -> DVC stage
Role = Literal["rl", "sft", "rft"]  # what a user's model is, besides the base and checkpoints
# transformers builds models under a process-global init context (meta device), so two threads
# loading at once (shards on a thread-pool runner) corrupt each other: load one at a time
LOAD_LOCK = threading.Lock()


def _check_device(device: str, key: str) -> None:
    require(device == "cpu" or device.startswith(("cuda", "mps", "xpu")), key,
            f"unknown device {device!r}", "use cpu or cuda[:N]")


@dataclass(frozen=True)
class ModelSpec:
    """One model name resolved: where its checkpoint is and how to load and prompt it."""

    name: str
    path: str  # a local Hugging Face directory (or a hub id, for users with network access)
    dtype: Dtype = "fp32"  # weights and forward; divergence math stays fp32
    device: str = "cpu"  # cpu | cuda | cuda:N
    max_prompt_tokens: int = 0  # longer prompts stop the run; 0 = no limit
    max_model_len: int = 0  # prompt + response tokens; 0 = prompt + max_new_tokens
    trust_remote_code: bool = False  # run Python shipped in the model directory (opt in only)
    chat_template: bool = True  # wrap prompts in the tokenizer's chat template, when it has one
    key: str = "models"  # the params.yaml key this spec came from, for error messages
    built_by: str = ""  # the stage that builds this model here; "" for a user's checkpoint

    def __post_init__(self) -> None:
        require(bool(self.path), "path", "is empty", "give a model directory")
        _check_device(self.device, "device")

    @property
    def path_key(self) -> str:
        """The params.yaml key that names this model's directory ("" for a model built here)."""
        return "" if self.built_by else f"models.named.{self.name}.path"

    def identity(self) -> dict[str, object]:
        """What a result computed with this model depends on, for fingerprints: the checkpoint's
        content hash (not its path or mtimes), dtype, device kind and prompt format."""
        return {"content": content_hash(self.path), "dtype": self.dtype,
                "device": self.device.split(":")[0], "chat_template": self.chat_template}


@dataclass(frozen=True)
class NamedModel:
    """`models.named.<name>`: a user's checkpoint; a field left out takes the section's value."""

    path: str = ""  # empty: the model this pipeline built under that name
    # what it is, when its name does not say (base, rl, sft, rft and rl_step_<N> do): rl, sft, rft
    role: Role | None = None
    hub: str = ""  # where `path` came from: `org/name@<commit>` (a snapshot of the hub cache)
    dtype: Dtype | None = None
    device: str | None = None
    max_prompt_tokens: int | None = None
    max_model_len: int | None = None
    trust_remote_code: bool | None = None
    chat_template: bool | None = None


@dataclass(frozen=True)
class ModelsParams:
    """`models`: defaults for every model, and per-name overrides under `named`."""

    dtype: Dtype = "fp32"
    device: str = "cpu"
    max_prompt_tokens: int = 0
    max_model_len: int = 0
    trust_remote_code: bool = False
    chat_template: bool = True
    named: dict[str, NamedModel] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, entry in [("", self), *((f"named.{n}.", e) for n, e in self.named.items())]:
            if entry.device is not None:
                _check_device(entry.device, f"{key}device")
            for field in ("max_prompt_tokens", "max_model_len"):
                value = getattr(entry, field)
                require(value is None or value >= 0, f"{key}{field}", f"{value} is negative",
                        "use 0 for no limit")

    def spec(self, name: str, layout: Layout) -> ModelSpec:
        """Model `name` resolved: its `named` entry over the section's defaults."""
        entry = self.named.get(name, NamedModel())
        values = {f: getattr(self, f) for f in ("dtype", "device", "max_prompt_tokens",
                                                  "max_model_len", "trust_remote_code",
                                                  "chat_template")}
        values.update({f: v for f, v in dataclasses.asdict(entry).items()
                       if v is not None and f not in ("path", "role", "hub")})
        path = entry.path or str(layout.model_dir(name))
        key = f"models.named.{name}" if name in self.named else "models"
        built_by = "" if entry.path else BUILT_BY.get(
            name, "rl" if rl_step_of(name) is not None else "")
        return ModelSpec(name=name, path=path, key=key, built_by=built_by, **values)


@dataclass(frozen=True)
class ModelEntry:
    """A model of the study: name, kind (base/rl/sft/rft/checkpoint/user), RL step, spec."""

    name: str
    kind: str
    rl_step: int | None
    spec: ModelSpec


def rl_step_of(name: str) -> int | None:
    """N of an RL checkpoint name `rl_step_<N>`, else None."""
    step = name.removeprefix(CHECKPOINT_PREFIX)
    return int(step) if name.startswith(CHECKPOINT_PREFIX) and step.isdigit() else None


def resolve(name: str, models: ModelsParams, layout: Layout) -> ModelEntry:
    """The model called `name`, with its kind and RL step (rows carry both)."""
    step = rl_step_of(name)
    named = models.named.get(name)
    kind = FAMILY_KINDS.get(name) or (named and named.role) or (
        "checkpoint" if step is not None else "user")
    return ModelEntry(name, kind, step, models.spec(name, layout))


def checkpoint_names(layout: Layout) -> list[str]:
    """Every complete RL checkpoint `rl_step_<N>` the rl stage wrote, by step."""
    if not layout.rl_steps_dir.is_dir():
        return []
    found = [p.name for p in layout.rl_steps_dir.glob(f"{CHECKPOINT_PREFIX}*")
             if rl_step_of(p.name) is not None and (p / "config.json").exists()]
    return sorted(found, key=rl_step_of)


def plan_models(
    names: Sequence[str], models: ModelsParams, layout: Layout, checkpoints: bool = False
) -> list[ModelEntry]:
    """Named models, then (if `checkpoints`) every RL checkpoint not already named: the ones
    the rl stage wrote and a user's (`models.named.rl_step_<N>`)."""
    entries = [resolve(n, models, layout) for n in names]
    if checkpoints:
        found = checkpoint_names(layout) + [n for n in models.named if rl_step_of(n) is not None]
        entries += [resolve(n, models, layout) for n in dict.fromkeys(found) if n not in names]
    return sorted(entries, key=lambda e: (e.kind == "checkpoint", e.rl_step or 0))
