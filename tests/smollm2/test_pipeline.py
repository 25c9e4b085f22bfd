"""real/params.yaml and real/dvc.yaml: every knob parses, every stage lists what it reads."""

from __future__ import annotations

from pathlib import Path

from rlvr.config import from_section, load_params
from rlvr.dvc import read_stages, stage_outputs
from rlvr.layout import Layout
from rlvr.smollm2.family import TrainingParams
from rlvr.smollm2.stages import STAGES, outputs
from rlvr.smollm2.task import ArithmeticParams
from rlvr.smollm2.weights import WeightsParams
from tests.test_config import PARTIAL as TOY_PARTIAL
from tests.test_config import SECTIONS, _missing, assert_stages_list_what_they_read

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "real"
PARAMS = load_params(REAL / "params.yaml")
REAL_SECTIONS = {**{k: v for k, v in SECTIONS.items() if k not in ("task", "model", "pretrain",
                                                                   "evaluate")},
                 "convert": WeightsParams, "task": ArithmeticParams, "training": TrainingParams}
PARTIAL = {**TOY_PARTIAL, ("rl", "sample"): ["grader"],  # the reward's grader
           ("cross_sample", "sample"): ["prompts", "grader", "unfit_prompts"],
           ("score", "task"): []}  # task.testbed: only with score.labeller `testbed` (toy)
# what a shared stage may do differently from the toy's: inputs the real family does not build
TOY_ONLY_INPUTS = {"data/models/rft", "data/plots/pretrain_loss.csv", "task.testbed"}


def test_every_section_parses_and_lists_every_knob():
    assert set(PARAMS) == set(REAL_SECTIONS)
    for name, cls in REAL_SECTIONS.items():
        from_section(cls, PARAMS, name)
        assert not _missing(cls, PARAMS[name], name), "real/params.yaml lists every knob"


def test_real_stages_list_the_params_they_read():
    assert_stages_list_what_they_read(REAL / "dvc.yaml", PARAMS, PARTIAL)


def test_real_pipeline_reuses_the_toy_flows_after_its_family_stages():
    stages = read_stages(REAL / "dvc.yaml")
    own = {n for n, s in stages.items() if " smollm2." in s.get("do", s)["cmd"]}
    assert own == set(STAGES)
    toy = read_stages(ROOT / "dvc.yaml")
    for name in set(stages) - own:
        real_body, toy_body = stages[name].get("do", stages[name]), toy[name].get("do", toy[name])
        assert real_body["cmd"] == toy_body["cmd"]
        # the same params, outputs, metrics and plots; data deps differ only by toy-only inputs
        for key in ("outs", "metrics", "plots"):
            assert real_body.get(key) == toy_body.get(key), (name, key)
        listed = {d for d in toy_body["params"] if isinstance(d, str)} - TOY_ONLY_INPUTS
        assert {d for d in real_body["params"] if isinstance(d, str)} == listed, name
        data = [d for d in toy_body["deps"] if d.startswith("data/") and d not in TOY_ONLY_INPUTS]
        assert [d for d in real_body["deps"] if d.startswith("data/")] == data, name
        assert [d for d in real_body["deps"] if not d.startswith("data/")] == [
            "../" + d for d in toy_body["deps"] if not d.startswith("data/")], name


def test_family_stages_own_what_real_dvc_yaml_declares():
    """What a stage sweeps (`outputs`) is exactly what DVC says it writes: no more, no less."""
    layout = Layout(Path("data"))
    for stage in STAGES:
        declared = {p for paths in stage_outputs(stage, REAL / "dvc.yaml").values() for p in paths}
        assert {str(p) for p in outputs(layout, stage)} == declared, stage
