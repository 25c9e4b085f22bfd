"""Typed, validated views of `params.yaml`: one frozen dataclass per section.

Every check raises `ValueError` naming the `params.yaml` key and what to change, so a bad value
stops a run before any work is done. Stages read only their own sections.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

PARAMS_FILE = Path("params.yaml")


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params file as a dict (the flows pick their sections from it)."""
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def require(ok: bool, key: str, problem: str, fix: str) -> None:
    """Raise a ValueError that names the params.yaml key, the problem and the fix."""
    if not ok:
        raise ValueError(f"params.yaml `{key}`: {problem}; {fix}")


def from_section(cls: type[T], params: dict[str, Any], name: str) -> T:
    """Build dataclass `cls` from section `name`; unknown keys are errors, missing use defaults."""
    raw = params.get(name) or {}
    require(isinstance(raw, dict), name, "must be a mapping", f"write `{name}:` as a section")
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - fields)
    require(
        not unknown,
        f"{name}.{unknown[0] if unknown else ''}",
        "unknown key",
        f"use one of {sorted(fields)}",
    )
    return cls(**raw)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """`task`: the synthetic problem set, its split, and the pretraining corpus styles."""

    seed: int = 0
    n_train: int = 6000
    n_eval: int = 256
    min_digits: int = 4
    max_digits: int = 7
    p_chain: float = 0.5
    slip_chain: float = 0.03
    slip_pairs: float = 0.08
    slip_pairs_total: float = 0.3
    p_bad_format: float = 0.3
    eval_prompts: str = (
        ""  # optional path of a user eval-prompt file (overlap with train is checked)
    )

    def __post_init__(self) -> None:
        require(
            self.n_train > 0 and self.n_eval > 0,
            "task.n_train/n_eval",
            "must be positive",
            "set both to at least 1",
        )
        require(
            1 <= self.min_digits <= self.max_digits <= 9,
            "task.min_digits/max_digits",
            f"need 1 <= min <= max <= 9, got {self.min_digits}..{self.max_digits}",
            "pick a digit range inside 1..9",
        )
        for key in ("p_chain", "slip_chain", "slip_pairs", "slip_pairs_total", "p_bad_format"):
            value = getattr(self, key)
            require(
                0.0 <= value <= 1.0,
                f"task.{key}",
                f"is a probability, got {value}",
                "use a value in [0, 1]",
            )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """`model`: the toy decoder's shape (see `rlvr.modeling.ModelShape`) and init seed."""

    architecture: str = "llama"
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 256
    max_length: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            self.architecture in ("llama", "qwen2"),
            "model.architecture",
            f"unknown architecture {self.architecture!r}",
            "use `llama` or `qwen2`",
        )
        require(
            self.hidden_size % self.num_heads == 0,
            "model.hidden_size",
            f"{self.hidden_size} is not divisible by num_heads={self.num_heads}",
            "make hidden_size a multiple of num_heads",
        )
        for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length"):
            require(
                getattr(self, key) > 0, f"model.{key}", "must be positive", "use an integer >= 1"
            )
