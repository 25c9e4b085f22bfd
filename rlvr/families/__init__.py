"""Model families by name (`family:` in a workspace's params.yaml): one module each.

A family says where a study's models and prompts come from:

- its `task` section (a dataclass: the prompts, their split, the grader's choice where it has one)
  and the `prepare` function that writes the eval (and train) split in the prompt-file layout;
- how its base is obtained (`build_base`: pretrain or convert, with the sections it reads), or
  `None` when the base is given (`models.named.base.path`, a user's checkpoint);
- the models it trains from that base (`rl`, and the controls that `sft_data` makes data for);
- its grader and token-role labeller (`grader(task)`, `labeller(task)`), and which graders and
  labellers fit its prompts (`check_fit`);
- the defaults of the shared knobs (`defaults`, a params.yaml overlay over the library's).

Every stage reads the family from params (`rlvr.study`), so a new family is one module here that
defines `FAMILY`: modules of this package are found by name, nothing else registers them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Labeller = Callable[[Sequence[str]], list[str]]


@dataclass(frozen=True)
class Family:
    """One family: its task section, how its models are obtained, its grader and defaults."""

    name: str
    summary: str  # one line for `rlvr init --help` and the report
    task: type  # dataclass of the `task` section
    prepare: Callable[..., dict]  # (layout, task cfg) -> summary; writes data/task/*.parquet
    grader: Callable[[Any], str]  # task cfg -> grader name (rlvr.testbed.graders.GRADERS)
    labeller: Callable[[Any], Labeller | None]  # task cfg -> token-role labeller (None: no roles)
    # the base: (layout, sections) -> summary, writing data/models/base; None: given by the user
    build_base: Callable[..., dict] | None = None
    base_sections: dict[str, type] = field(default_factory=dict)  # what build_base reads
    base_outputs: tuple[str, ...] = ()  # its log: `<name>_loss` plots and metrics names
    base_splits: tuple[str, ...] = ()  # the splits build_base reads (`train`: a corpus)
    trains_rl: bool = False  # the rl stage trains `rl` (and its checkpoints) from the base
    # control models trained from the base by next-token loss: name -> data maker
    # (layout, task cfg, sft cfg, model, tokenizer, spec, progress) -> list[Example]
    controls: dict[str, Callable[..., list]] = field(default_factory=dict)
    # (prompt record, response text) -> {trait: bool}: how a response went (evaluate's shares)
    describe: Callable[..., dict[str, bool]] | None = None
    check_fit: Callable[..., None] | None = None  # (layout, task cfg) -> raises ValueError
    defaults: dict[str, Any] = field(default_factory=dict)  # overlay over the library defaults

    @property
    def builds(self) -> tuple[str, ...]:
        """The models this family trains or converts (base first), in pipeline order."""
        return (("base",) if self.build_base else ()) + (("rl",) if self.trains_rl else ()) + \
            tuple(self.controls)


def names() -> list[str]:
    """Every family: the modules of this package that define `FAMILY`."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def module_name(name: str) -> str:
    """The module that defines family `name` (what a workspace's stages depend on)."""
    return f"{__name__}.{name}"


def get_family(name: str, key: str = "family") -> Family:
    """The family called `name`; a ValueError naming params key `key` when there is none."""
    if name not in names():
        raise ValueError(f"params.yaml `{key}`: unknown family {name!r}; use one of {names()}")
    family = importlib.import_module(module_name(name)).FAMILY
    assert family.name == name, f"{module_name(name)} defines family {family.name!r}"
    return family


TASK_FILES = ("prompts", "train_prompts", "eval_prompts")  # task knobs naming a user's file


def task_files(task: Any) -> dict[str, str]:
    """The user's files the family's prepare reads, by their `task` knob."""
    return {k: getattr(task, k) for k in TASK_FILES if getattr(task, k, "")}


def check_task_files(task: Any) -> None:
    """The prepare stage's check before its run: every file the task names exists."""
    for key, path in task_files(task).items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"params.yaml `task.{key}`: no file at {path}; fix the path")

