"""The models and pairs a run covers: names, kinds, RL steps, checkpoint specs, metadata tables.

The family's models (`base`, `rl`, `sft`, `rft`) resolve through the `models` section; RL
checkpoints `rl_step_<N>` are found under the RL stage's checkpoint directory. Sample and token
rows carry the kind and RL step, so analyses can follow checkpoints without a join.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rlvr.config import ModelsConfig, ModelSpec

FAMILY_KINDS = {"base": "base", "rl": "rl", "sft": "sft", "rft": "rft"}
CHECKPOINT_PREFIX = "rl_step_"
# transformers builds models under a process-global init context (meta device), so two threads
# loading at once (shards on a thread-pool runner) corrupt each other: load one at a time
LOAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelEntry:
    """A model of the study: its name, kind (base/rl/sft/rft/checkpoint/user), RL step, spec."""

    name: str
    kind: str
    rl_step: int | None
    spec: ModelSpec


def plan_models(
    names: Sequence[str], models: ModelsConfig, checkpoints_dir: str | Path | None
) -> list[ModelEntry]:
    """Named models, then every complete RL checkpoint `rl_step_<N>` under `checkpoints_dir`."""
    entries = [ModelEntry(n, FAMILY_KINDS.get(n, "user"), None, models.spec(n)) for n in names]
    if checkpoints_dir is not None and Path(checkpoints_dir).is_dir():
        for path in sorted(Path(checkpoints_dir).glob(f"{CHECKPOINT_PREFIX}*")):
            step = path.name[len(CHECKPOINT_PREFIX):]
            if step.isdigit() and (path / "config.json").exists() and path.name not in names:
                spec = dataclasses.replace(models.spec(path.name), path=str(path))
                entries.append(ModelEntry(path.name, "checkpoint", int(step), spec))
    return sorted(entries, key=lambda e: (e.kind == "checkpoint", e.rl_step or 0))


def model_stamp(path: str | Path) -> list:
    """Size and mtime of a model directory's files: part of a shard's fingerprint."""
    path = Path(path)
    if not path.is_dir():
        return [str(path)]
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.iterdir())
            if p.is_file()]

