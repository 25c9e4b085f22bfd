"""params.yaml against the library's knob dataclasses: typed parsing, one-line errors naming the
key, defaults equal to params.yaml, and dvc.yaml params that cover what each stage reads."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rlvr.config import ParamsError, from_section, is_seed, load_params
from rlvr.cross.sweep import CrossParams
from rlvr.decisive.positions import DecisiveParams
from rlvr.dvc import read_stages, stage_module
from rlvr.generation.backends import BackendParams
from rlvr.generation.samples import SampleParams
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.report.blocks import ReportParams
from rlvr.testbed.digits import make_split
from rlvr.testbed.model import ModelShape
from rlvr.testbed.split import TaskParams, prepare_split
from rlvr.tokens.analysis import AnalyzeParams
from rlvr.tokens.scorer import ScoreParams
from rlvr.training.evaluation import EvaluateParams
from rlvr.training.family import train_rl
from rlvr.training.grpo import GRPOParams
from rlvr.training.lm import PretrainParams, SFTParams
from rlvr.weighted.grid import WeightedParams
from tasks.runners import RunnerParams

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")
SECTIONS = {  # every params.yaml section and the dataclass that owns its knobs
    "task": TaskParams, "model": ModelShape, "pretrain": PretrainParams, "rl": GRPOParams,
    "sft": SFTParams, "evaluate": EvaluateParams, "runner": RunnerParams,
    "analyze": AnalyzeParams, "report": ReportParams, "weighted": WeightedParams,
    "cross_sample": CrossParams, "sample": SampleParams, "score": ScoreParams,
    "models": ModelsParams, "backend": BackendParams, "decisive": DecisiveParams,
}
NO_RESULT = {"runner"}  # sections (besides every `resources` key) that change no result
PARTIAL = {  # stages that read only some keys of a section: dvc.yaml lists those
    ("prepare", "task"): ["seed", "n_train", "n_eval", "min_digits", "max_digits",
                          "eval_prompts"],
    ("pretrain", "task"): ["testbed", "p_chain", "slip_chain", "slip_pairs",
                           "slip_pairs_total", "p_bad_format", "p_check"],
    ("sft", "task"): ["testbed"],
    ("score", "task"): ["testbed"],
    ("decisive", "sample"): ["grader"],
    ("cross_sample", "sample"): ["prompts", "grader", "unfit_prompts"],
    ("weighted_summary", "weighted"): ["variants", "s", "seeds"],  # the runs are its deps
    ("weighted_summary", "models"): [],
}


def _missing(cls: type, raw: dict, key: str) -> list[str]:
    """Knobs of dataclass `cls` (nested ones expanded) that the mapping `raw` leaves out."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            out.append(f"{key}.{f.name}")
        elif dataclasses.is_dataclass(hints[f.name]):
            out += _missing(hints[f.name], raw[f.name], f"{key}.{f.name}")
    return out


def test_every_section_parses_and_lists_every_knob_at_its_code_default():
    assert set(PARAMS) == set(SECTIONS)
    for name, cls in SECTIONS.items():
        assert from_section(cls, PARAMS, name) == cls(), f"{name}: params.yaml != code defaults"
        assert not _missing(cls, PARAMS[name], name), "params.yaml lists every knob"


BAD = [  # (section, values, the message's start) one per kind of mistake
    ("rl", {"lr": "1e-3x"}, "params.yaml `rl.lr`: '1e-3x' is not a number; e.g. `lr: 0.00015`"),
    ("sample", {"temperature": "hot"}, "params.yaml `sample.temperature`: 'hot' is not a number"),
    ("sample", {"n_per_prompt": 2.5}, "params.yaml `sample.n_per_prompt`: 2.5 is not a whole "
                                      "number; e.g. `n_per_prompt: 4`"),
    ("sample", {"models": "base"}, "params.yaml `sample.models`: 'base' is not a list"),
    ("sample", {"grader": "gsm"}, "params.yaml `sample.grader`: unknown grader 'gsm'"),
    ("sample", {"unfit_prompts": "skip"}, "params.yaml `sample.unfit_prompts`: 'skip' is not one "
                                          "of ['error', 'drop']"),
    ("rl", {"dynamic_sampling": "yes"}, "params.yaml `rl.dynamic_sampling`: 'yes' is not true "
                                        "or false"),
    ("rl", {"group_size": 1}, "params.yaml `rl.group_size`: must be >= 2"),
    ("rl", {"group_sise": 8}, "params.yaml `rl.group_sise`: unknown key; use one of"),
    ("rl", {"clip_low": 1.0}, "params.yaml `rl.clip_low`: must be in [0, 1)"),
    ("pretrain", {"warmup_steps": 10, "steps": 5}, "params.yaml `pretrain.warmup_steps`"),
    ("sft", {"rft_samples": 0}, "params.yaml `sft.rft_samples`: must be >= 1"),
    ("evaluate", {"models": []}, "params.yaml `evaluate.models`: must be a non-empty list"),
    ("model", {"architecture": "gpt9"}, "params.yaml `model.architecture`: 'gpt9' is not one "
                                        "of ['llama', 'qwen2']"),
    ("task", {"p_chain": 1.5}, "params.yaml `task.p_chain`: is a probability, got 1.5"),
    ("task", {"testbed": "long"}, "params.yaml `task.testbed`: 'long' is not one of"),
    ("sft", {"data": "mine"}, "params.yaml `sft.data`: 'mine' is not one of"),
    ("decisive", {"generators": ["rl"]}, "params.yaml `decisive.generators`: ['rl'] is not a "
                                         "list of distinct"),
    ("decisive", {"pivot_cuts": [0.0]}, "params.yaml `decisive.pivot_cuts`: need |ΔV| cuts"),
    ("score", {"resources": {"vocab_chunk": 0}}, "params.yaml `score.resources.vocab_chunk`: "
                                                 "must be >= 1"),
    ("weighted", {"rl": {"lr": -1.0}}, "params.yaml `weighted.rl.lr`: must be positive"),
    ("weighted", {"variants": {"baseline": {}, "x": {"divergence": "kl"}}},
     "params.yaml `weighted.variants.x.divergence`: 'kl' is not one of"),
    ("weighted", {"variants": {"x_high": {"divergence": "js_base"}}},
     "params.yaml `weighted.variants`: needs a `baseline` entry"),
    ("models", {"named": {"base": {"dtype": "int8"}}}, "params.yaml `models.named.base.dtype`"),
    ("cross_sample", {"seeds": [0, "one"]}, "params.yaml `cross_sample.seeds[1]`: 'one' is not "
                                            "a whole number"),
]


# whole-number knobs where 0 means something ("all", "none", "no limit"); every other count,
# size and length must be >= 1, and no whole number may be negative (seeds: in [0, 2^63 - 1])
ZERO_OK = {"decisive.positions", "models.max_prompt_tokens", "models.max_model_len",
           "pretrain.warmup_steps", "sft.warmup_steps", "report.responses_per_group",
           "rl.trainable_layers", "weighted.rl.trainable_layers", "task.low", "task.demos",
           "task.n_train", "training.sft_trainable_layers", "score.audit.rows"}


def _whole_number_knobs(cls: type, prefix: str):
    """(key, annotation) of every int knob of dataclass `cls`, nested dataclasses expanded."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _whole_number_knobs(hints[f.name], f"{prefix}.{f.name}")
        elif hints[f.name] in (int, int | None, list[int]):
            yield f"{prefix}.{f.name}", hints[f.name]


def _parse_one(sections: dict, key: str, value: object) -> str:
    """The ParamsError line of setting `key` to `value` alone ("" when it parses)."""
    section, *path = key.split(".")
    raw: dict = {}
    leaf = raw
    for part in path[:-1]:
        leaf = leaf.setdefault(part, {})
    leaf[path[-1]] = value
    try:
        from_section(sections[section], {section: raw}, section)
    except ParamsError as err:
        return str(err)
    return ""


def test_every_seed_and_count_of_every_section_is_bounded_at_parsing():
    """Audit of every section (toy and real pipelines): a negative count or seed, and a zero
    count where zero means nothing, fail at parsing with one line naming the key."""
    from tests.smollm2.test_pipeline import REAL_SECTIONS

    sections = {**SECTIONS, **REAL_SECTIONS}
    checked = 0
    for section, cls in sections.items():
        for key, hint in _whole_number_knobs(cls, section):
            wrap = (lambda v: [0, v]) if hint == list[int] else (lambda v: v)
            shown = f"{key}[1]" if hint == list[int] else key
            assert _parse_one(sections, key, wrap(-1)).startswith(
                f"params.yaml `{shown}`: -1 is "), key
            if is_seed(shown):
                assert _parse_one(sections, key, wrap(2**63)).startswith(
                    f"params.yaml `{shown}`: {2**63} is not a seed"), key
            elif key not in ZERO_OK:
                assert _parse_one(sections, key, 0).startswith("params.yaml `task."
                                                               if key.startswith("task.")
                                                               else f"params.yaml `{key}`"), key
            checked += 1
    assert checked > 90


def test_a_negative_seed_names_its_key():
    """issue 21: `decisive.seed: -1` failed after planning, with numpy's words and no key."""
    with pytest.raises(ParamsError) as err:
        from_section(DecisiveParams, {"decisive": {"seed": -1}}, "decisive")
    assert str(err.value) == ("params.yaml `decisive.seed`: -1 is not a seed (a whole number in "
                              "[0, 2^63 - 1]); e.g. `seed: 0`")


@pytest.mark.parametrize("section,values,message", BAD)
def test_bad_values_give_one_line_naming_key_value_and_fix(section, values, message):
    with pytest.raises(ParamsError) as err:
        from_section(SECTIONS[section], {section: values}, section)
    text = str(err.value)
    assert text.startswith(message), text
    assert "\n" not in text and ";" in text  # one line: problem; fix


def test_yaml_1_1_number_strings_are_floats():
    assert from_section(GRPOParams, {"rl": {"lr": "1e-3"}}, "rl").lr == 0.001
    assert yaml.safe_load("lr: 1e-3")["lr"] == "1e-3"  # why the parser must accept it


def test_a_missing_section_is_an_error_not_the_defaults():
    with pytest.raises(ParamsError, match=r"params.yaml `sample`: section is missing"):
        from_section(SampleParams, {"score": {}}, "sample")


def test_a_stage_with_a_bad_value_exits_with_one_line_and_touches_nothing(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["task"]["n_train"] = "many"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, "-m", "flows.prepare"], cwd=tmp_path, text=True,
                         capture_output=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
    assert run.returncode == 2
    assert run.stderr.strip() == ("error: params.yaml `task.n_train`: 'many' is not a whole "
                                  "number; e.g. `n_train: 6000`")
    assert not (tmp_path / "data").exists()


def _sections_read(stage_cmd: str) -> set[str]:
    """The params sections a flow's `main` parses (its `from_section(..., "<name>")` calls)."""
    path = ROOT / (stage_module(stage_cmd).replace(".", "/") + ".py")
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") == "from_section"]
    return {c.args[2].value for c in calls}


def assert_stages_list_what_they_read(dvc_yaml: Path, params: dict, partial: dict) -> None:
    """Every stage of `dvc_yaml` lists each params key its flow reads (`partial`: the stages
    that read only some keys of a section), and no speed knob (`resources`, NO_RESULT)."""
    for name, stage in read_stages(dvc_yaml).items():
        body = stage.get("do", stage)
        listed = [p for p in body.get("params", []) if isinstance(p, str)]
        assert not any("resources" in p or p.split(".")[0] in NO_RESULT for p in listed), name
        for section in _sections_read(body["cmd"]) - NO_RESULT:
            keys = partial.get((name, section))
            keys = [k for k in params[section] if k != "resources"] if keys is None else keys
            for key in keys:
                covered = any(p in (section, f"{section}.{key}") or p.startswith(
                    f"{section}.{key}.") for p in listed)
                # a foreach stage lists its own item (`weighted.variants.${key}`)
                covered = covered or any(p.startswith(f"{section}.{key}.${{") for p in listed)
                assert covered, f"{dvc_yaml}: stage {name} reads `{section}.{key}`: not listed"


def test_dvc_params_cover_what_each_stage_reads_and_no_speed_knob():
    assert_stages_list_what_they_read(ROOT / "dvc.yaml", PARAMS, PARTIAL)


def test_eval_file_overlapping_train_is_rejected(tmp_path):
    task = TaskParams(n_train=200, n_eval=20)
    train, _ = make_split(task.n_train, task.n_eval, task.seed, task.min_digits, task.max_digits)
    user = tmp_path / "eval.jsonl"
    pd.DataFrame({"prompt": ["sum 1 2 3 4 5 6 7 8 9 :", train[5].prompt]}).to_json(
        user, orient="records", lines=True)
    layout = Layout(tmp_path / "data")
    with pytest.raises(ValueError, match=r"task\.eval_prompts.*also train prompts"):
        prepare_split(TaskParams(n_train=200, n_eval=20, eval_prompts=str(user)), layout)
    assert not layout.split("train").exists()  # nothing written on a bad config


def test_disjoint_eval_file_is_used(tmp_path):
    user = tmp_path / "eval.csv"
    pd.DataFrame({"prompt": ["sum 1 2 3 4 5 6 7 8 9 :", "sum 9 9 9 9 9 9 9 9 9 :"]}).to_csv(
        user, index=False)
    layout = Layout(tmp_path / "data")
    summary = prepare_split(TaskParams(n_train=200, n_eval=20, eval_prompts=str(user)), layout)
    assert summary == {"n_train": 200, "n_eval": 2}
    table = pd.read_parquet(layout.split("eval"))
    assert list(table.columns) == ["prompt_id", "prompt", "answer", "n_digits"]
    assert table["answer"].tolist() == ["45", "81"] and table["n_digits"].tolist() == [9, 9]


def test_malformed_eval_prompt_names_the_key(tmp_path):
    user = tmp_path / "eval.csv"
    pd.DataFrame({"prompt": ["what is 2 + 2?"]}).to_csv(user, index=False)
    with pytest.raises(ValueError, match=r"task\.eval_prompts.*not a task prompt"):
        prepare_split(TaskParams(eval_prompts=str(user)), Layout(tmp_path / "data"))


def test_missing_base_model_names_path_and_stage(tmp_path):
    layout = Layout(tmp_path)
    prepare_split(TaskParams(n_train=50, n_eval=5), layout)
    with pytest.raises(FileNotFoundError) as err:
        train_rl(layout, GRPOParams())
    assert str(layout.model_dir("base")) in str(err.value) and "pretrain" in str(err.value)
