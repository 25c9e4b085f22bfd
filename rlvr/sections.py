"""Every shared params.yaml section and the dataclass that owns its knobs, for the tools that
see all of them at once (`rlvr params`, parameter overrides of a deployment run, the tests).

Stages never import this module: each parses only the sections it reads (`Study.section`), so
its code deps stay its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rlvr.cross.sweep import CrossParams
from rlvr.decisive.positions import DecisiveParams
from rlvr.generation.backends import BackendParams
from rlvr.generation.samples import SampleParams
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.report.blocks import ReportParams
from rlvr.study import Study
from rlvr.tokens.analysis import AnalyzeParams
from rlvr.tokens.scorer import ScoreParams
from rlvr.training.grpo import GRPOParams
from rlvr.training.lm import SFTParams
from rlvr.weighted.grid import WeightedParams

SECTIONS: dict[str, type] = {
    "models": ModelsParams, "backend": BackendParams, "rl": GRPOParams, "sft": SFTParams,
    "sample": SampleParams, "score": ScoreParams, "analyze": AnalyzeParams,
    "cross_sample": CrossParams, "decisive": DecisiveParams, "weighted": WeightedParams,
    "report": ReportParams,
}


def full_params(study: Study, layout: Layout | None = None) -> dict[str, Any]:
    """Every knob of the study with the value a stage would use (library defaults, then the
    family's, then params.yaml's), section by section; sections without a dataclass here (e.g.
    `runner`) as params.yaml has them."""
    family, layout = study.family, layout or Layout()
    out: dict[str, Any] = {"family": family.name,
                           "task": dataclasses.asdict(study.task)}
    for name, cls in {**family.base_sections, **SECTIONS}.items():
        out[name] = dataclasses.asdict(study.section(cls, name, layout))
    out["weighted"].pop("variants", None)  # they live in their own section
    for name in set(study.params) - set(out):
        out[name] = study.params[name]
    return out
