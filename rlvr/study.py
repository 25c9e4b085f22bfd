"""A study's effective parameters: its family's defaults under the workspace's params.yaml.

A workspace's params.yaml names its family (`family: toy | smollm2 | pair`) and holds only what
differs from that family's defaults (`rlvr.families`), which hold only what differs from the
library's (each section's dataclass). `load_study` merges the three, checks that every section
is one the pipeline knows, and answers what every stage asks of the study: a section parsed
into its dataclass, the `task` section, the grader and labeller, and the study's models.

The models of a study (its roster) are the ones its family builds (`base`, `rl`, controls and
RL checkpoints) plus every `models.named` entry. A stage knob that names models and is left
out of params.yaml means "the study's": `sample.models` every model, `score.tuned` every model
but the base, `decisive.tuned` / `cross_sample.tuned_model` the first RL model, and so on
(`ROSTER_KEYS`), so a user's pair needs no model name outside `models`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rlvr.config import PARAMS_FILE, ParamsError, load_params, parse
from rlvr.families import Family, get_family
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams, checkpoint_names, resolve

T = TypeVar("T")

# the shared sections every family has (each parsed by its stage's dataclass), besides `task`,
# the family's own sections and the top-level `family` key
SHARED = ("models", "backend", "runner", "rl", "sft", "sample", "score", "analyze",
          "cross_sample", "decisive", "weighted", "weighted_variants", "report")


def merge(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` deep-merged onto a copy of `under` (mappings merge, anything else replaces)."""
    out = copy.deepcopy(under)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Study:
    """A workspace's family and effective params (family defaults + params.yaml)."""

    family: Family
    params: dict[str, Any]  # effective, section by section; library defaults stay in dataclasses
    own: dict[str, Any]  # params.yaml as written (what differs from the family's defaults)

    def raw(self, name: str) -> dict[str, Any]:
        """Section `name` as a mapping (empty when neither the family nor params.yaml set it)."""
        value = self.params.get(name)
        return dict(value) if isinstance(value, dict) else ({} if value is None else value)

    def section(self, cls: type[T], name: str, layout: Layout | None = None) -> T:
        """Section `name` parsed into `cls`; model-naming knobs left out take the study's
        models (`ROSTER_KEYS`, which needs the `layout` for built RL checkpoints)."""
        raw = self.raw(name)
        for key, pick in ROSTER_KEYS.get(name, {}).items():
            if isinstance(raw, dict) and key not in raw:
                raw[key] = pick(self, layout or Layout())
        if name != "weighted" or "weighted_variants" not in self.params:
            return parse(cls, raw, name)
        # the grid lives in its own top-level section, so that each variant is a DVC param
        raw["variants"] = self.params["weighted_variants"]
        try:
            return parse(cls, raw, name)
        except ParamsError as err:
            if not err.key.startswith("weighted.variants"):
                raise
            raise ParamsError("weighted_variants" + err.key.removeprefix("weighted.variants"),
                              err.problem, err.fix) from None

    @property
    def task(self) -> Any:
        """The family's `task` section."""
        return parse(self.family.task, self.raw("task"), "task")

    @property
    def grader(self) -> str:
        return self.family.grader(self.task)

    def labeller(self):
        return self.family.labeller(self.task)

    @property
    def models(self) -> ModelsParams:
        return parse(ModelsParams, self.raw("models"), "models")

    # the roster ---------------------------------------------------------------------------
    def roster(self, layout: Layout) -> list[str]:
        """Every model of the study, base first: the family's, then `models.named` ones, then
        the RL checkpoints the rl stage wrote."""
        names = list(self.family.builds) + [n for n in self.models.named
                                            if n not in self.family.builds]
        if "base" not in names:
            raise ParamsError("models.named.base", "the study has no base model",
                              "give its checkpoint directory as models.named.base.path")
        names = ["base"] + [n for n in names if n != "base"]
        return names + [n for n in checkpoint_names(layout) if n not in names]

    def kinds(self, layout: Layout) -> dict[str, str]:
        """Model name -> kind (base, rl, sft, rft, checkpoint, user) over the roster."""
        models = self.models
        return {n: resolve(n, models, layout).kind for n in self.roster(layout)}

    def primary(self, layout: Layout) -> str:
        """The study's RL model: the first of kind `rl` (what decisive and cross_sample use)."""
        rl = [n for n, k in self.kinds(layout).items() if k == "rl"]
        if not rl:
            raise ParamsError("models.named", "the study has no RL-tuned model",
                              "add one, e.g. `rl: {path: DIR, role: rl}`")
        return rl[0]


def _final_pair(study: Study, layout: Layout) -> str:
    return f"base__{study.primary(layout)}"


def _viewer_pairs(study: Study, layout: Layout) -> list[str]:
    kinds = study.kinds(layout)
    shown = [study.primary(layout)] + [n for n, k in kinds.items() if k == "sft"][:1]
    return [f"base__{n}" for n in shown]


# section -> knob -> what the study gives it when params.yaml leaves it out
ROSTER_KEYS = {
    "sample": {"models": lambda s, lay: [n for n, k in s.kinds(lay).items()
                                         if k != "checkpoint"]},
    "score": {"base": lambda s, lay: "base",
              "tuned": lambda s, lay: [n for n, k in s.kinds(lay).items()
                                       if k not in ("base", "checkpoint")]},
    "decisive": {"base": lambda s, lay: "base", "tuned": lambda s, lay: s.primary(lay)},
    "cross_sample": {"base_model": lambda s, lay: "base",
                     "tuned_model": lambda s, lay: s.primary(lay)},
    "analyze": {"final_pair": _final_pair},
    "report": {"viewer_pairs": _viewer_pairs},
    "weighted": {"model": lambda s, lay: "base"},
}


def known_sections(family: Family) -> set[str]:
    """Every section a workspace of `family` may have."""
    return {"family", "task", *SHARED, *family.base_sections}


def load_study(path: str | Path = PARAMS_FILE) -> Study:
    """The study of the workspace whose params.yaml is `path`."""
    own = load_params(path)
    if "family" not in own:
        raise ParamsError("family", f"{path} names no family",
                          "add a first line `family: toy` (or smollm2, pair)")
    if not isinstance(own["family"], str):
        raise ParamsError("family", f"{own['family']!r} is not a family name",
                          "write e.g. `family: toy`")
    family = get_family(own["family"])
    unknown = sorted(set(own) - known_sections(family))
    if unknown:
        raise ParamsError(unknown[0], f"not a section of a `{family.name}` workspace",
                          f"use one of {sorted(known_sections(family))}")
    return Study(family, merge(family.defaults, own), own)
