"""params.yaml against the library's knob dataclasses: typed parsing, one-line errors naming the
key, a workspace's params over its family's defaults, and dvc.yaml params that cover what each
stage reads."""

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

from rlvr import server
from rlvr.config import ParamsError, from_section, is_seed
from rlvr.decisive.positions import DecisiveParams
from rlvr.families import get_family, names
from rlvr.generation.samples import SampleParams
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.pipeline import stages
from rlvr.sections import SECTIONS as SHARED
from rlvr.sections import full_params
from rlvr.study import load_study
from rlvr.testbed.digits import make_split
from rlvr.testbed.model import ModelShape
from rlvr.testbed.split import TaskParams, prepare_split
from rlvr.training.family import train_rl
from rlvr.training.grpo import GRPOParams
from rlvr.training.lm import PretrainParams
from tasks.runners import RunnerParams

ROOT = Path(__file__).resolve().parents[1]
WORKSPACES = (ROOT, ROOT / "real")  # the built-in studies: the toy and smollm2 families
SECTIONS = {  # every section of the toy workspace and the dataclass that owns its knobs
    **SHARED, "task": TaskParams, "model": ModelShape, "pretrain": PretrainParams,
    "runner": RunnerParams,
}
NO_RESULT = {"runner"}  # sections that change no result: no stage tracks them
WORKSPACE_SECTIONS = {"family", "weighted_variants"}  # read by the study, not a dataclass


def test_the_toy_family_defaults_are_the_library_defaults():
    """The toy workspace sets only its weighted grid, and the toy family nothing: every
    section parses to its dataclass's defaults (model-naming knobs from the roster, which for
    the toy's built models are those defaults too)."""
    study = load_study(ROOT / "params.yaml")
    assert get_family("toy").defaults == {}
    assert {k for k, v in study.own.items() if v} == {"family", "weighted_variants"}
    layout = Layout(Path("/nonexistent"))  # no RL checkpoint written yet
    for name, cls in SECTIONS.items():
        got = study.section(cls, name, layout)
        want = cls()
        if name == "weighted":
            got = dataclasses.replace(got, variants=want.variants)
        assert got == want, name
    assert study.task == TaskParams()


def test_every_workspace_knob_resolves():
    for ws in WORKSPACES:
        study = load_study(ws / "params.yaml")
        full = full_params(study)
        assert set(SHARED) <= set(full) and full["family"] == study.family.name
    real = load_study(ROOT / "real/params.yaml")
    assert real.section(GRPOParams, "rl").trainable_layers == 6  # the family's default
    assert real.grader == "answer"


BAD = [  # (section, values, the message's start) one per kind of mistake
    ("rl", {"lr": "1e-3x"}, "params.yaml `rl.lr`: '1e-3x' is not a number; e.g. `lr: 0.00015`"),
    ("sample", {"temperature": "hot"}, "params.yaml `sample.temperature`: 'hot' is not a number"),
    ("sample", {"n_per_prompt": 2.5}, "params.yaml `sample.n_per_prompt`: 2.5 is not a whole "
                                      "number; e.g. `n_per_prompt: 4`"),
    ("sample", {"models": "base"}, "params.yaml `sample.models`: 'base' is not a list"),
    ("sample", {"unfit_prompts": "skip"}, "params.yaml `sample.unfit_prompts`: 'skip' is not one "
                                          "of ['error', 'drop']"),
    ("rl", {"dynamic_sampling": "yes"}, "params.yaml `rl.dynamic_sampling`: 'yes' is not true "
                                        "or false"),
    ("rl", {"group_size": 1}, "params.yaml `rl.group_size`: must be >= 2"),
    ("rl", {"group_sise": 8}, "params.yaml `rl.group_sise`: unknown key; use one of"),
    ("rl", {"clip_low": 1.0}, "params.yaml `rl.clip_low`: must be in [0, 1)"),
    ("pretrain", {"warmup_steps": 10, "steps": 5}, "params.yaml `pretrain.warmup_steps`"),
    ("sft", {"rft_samples": 0}, "params.yaml `sft.rft_samples`: must be >= 1"),
    ("model", {"architecture": "gpt9"}, "params.yaml `model.architecture`: 'gpt9' is not one "
                                        "of ['llama', 'qwen2']"),
    ("task", {"p_chain": 1.5}, "params.yaml `task.p_chain`: is a probability, got 1.5"),
    ("task", {"testbed": "long"}, "params.yaml `task.testbed`: 'long' is not one of"),
    ("sft", {"data": "mine"}, "params.yaml `sft.data`: 'mine' is not one of"),
    ("decisive", {"generators": ["rl"]}, "params.yaml `decisive.generators`: ['rl'] is not a "
                                         "list of distinct"),
    ("decisive", {"pivot_cuts": [0.0]}, "params.yaml `decisive.pivot_cuts`: need |ΔV| cuts"),
    ("decisive", {"design": "adaptive"}, "params.yaml `decisive.design`: 'adaptive' is not one "
                                         "of ['exhaustive', 'stratified']"),
    ("decisive", {"design": "stratified", "positions": 4}, "params.yaml `decisive.positions`: "
                                                          "is 4 with design `stratified`"),
    ("decisive", {"min_rollouts": 16, "max_rollouts": 8}, "params.yaml `decisive.max_rollouts`: "
                                                         "8 is below min_rollouts 16"),
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
           "task.n_train", "sft.trainable_layers", "score.audit.rows"}


def _whole_number_knobs(cls: type, prefix: str):
    """(key, annotation) of every int knob of dataclass `cls`, nested dataclasses expanded."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _whole_number_knobs(hints[f.name], f"{prefix}.{f.name}")
        elif hints[f.name] in (int, int | None, list[int]):
            yield f"{prefix}.{f.name}", hints[f.name]


def _parse_one(cls: type, key: str, value: object) -> str:
    """The ParamsError line of setting `key` to `value` alone ("" when it parses)."""
    section, *path = key.split(".")
    raw: dict = {}
    leaf = raw
    for part in path[:-1]:
        leaf = leaf.setdefault(part, {})
    leaf[path[-1]] = value
    try:
        from_section(cls, {section: raw}, section)
    except ParamsError as err:
        return str(err)
    return ""


def _every_section() -> list[tuple[str, type]]:
    """(section, dataclass) of every workspace of every family (task sections differ)."""
    out = [*SHARED.items(), ("runner", RunnerParams)]
    for family in map(get_family, names()):
        out += [("task", family.task), *family.base_sections.items()]
    return list(dict.fromkeys(out))


def test_every_seed_and_count_of_every_section_is_bounded_at_parsing():
    """Audit of every section of every family: a negative count or seed, and a zero count
    where zero means nothing, fail at parsing with one line naming the key."""
    checked = 0
    for section, cls in _every_section():
        for key, hint in _whole_number_knobs(cls, section):
            wrap = (lambda v: [0, v]) if hint == list[int] else (lambda v: v)
            shown = f"{key}[1]" if hint == list[int] else key
            assert _parse_one(cls, key, wrap(-1)).startswith(
                f"params.yaml `{shown}`: -1 is "), key
            if is_seed(shown):
                assert _parse_one(cls, key, wrap(2**63)).startswith(
                    f"params.yaml `{shown}`: {2**63} is not a seed"), key
            elif key not in ZERO_OK:  # a task's range check may name its other end
                named = "params.yaml `task." if key.startswith("task.") else f"params.yaml `{key}`"
                assert _parse_one(cls, key, 0).startswith(named), key
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


def test_reproduce_with_a_bad_value_prints_one_line_before_any_server(tmp_path):
    """`make reproduce` on a bad params.yaml: the one line and exit 2, no Prefect server started
    (its first line would say so), no traceback, nothing written."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["task"]["n_train"] = "many"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, "-m", "flows.reproduce"], cwd=tmp_path, text=True,
                         capture_output=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin",
                              "PREFECT_HOME": str(tmp_path / "prefect")})
    assert run.returncode == 2
    assert run.stderr.strip() == ("error: params.yaml `task.n_train`: 'many' is not a whole "
                                  "number; e.g. `n_train: 6000`")
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "prefect" / server.RECORD).exists()  # no server was started


STUDY_READS = {"task": "task", "models": "models", "grader": "task", "labeller": "task",
               "family": "family"}  # Study attributes and the section each reads


def _sections_read(flow: str) -> set[str]:
    """The params sections a flow's `main` reads through the study: `study.section(_, "x")`,
    `study.task`, `study.models`, `study.grader`/`labeller` (task) and `study.family`."""
    tree = ast.parse((ROOT / "flows" / f"{flow}.py").read_text())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    found = set()
    for node in ast.walk(main):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "section":
            if isinstance(node.args[1], ast.Constant):  # base: the family's base sections
                found.add(node.args[1].value)
        elif isinstance(node, ast.Attribute) and node.attr in STUDY_READS:
            found.add(STUDY_READS[node.attr])
    return found


def test_dvc_params_cover_what_each_stage_reads_and_no_speed_knob():
    """Each stage's params (generated) cover every section its flow reads; no speed-only
    section is tracked."""
    for ws in WORKSPACES:
        study = load_study(ws / "params.yaml")
        for stage in stages(study):
            tracked = {r.split(".")[0] for r in stage.reads}
            assert not tracked & NO_RESULT, stage.name
            reads = _sections_read(stage.flow or stage.name) - NO_RESULT
            if stage.name == "base":
                reads |= set(study.family.base_sections)
            if stage.name == "weighted_run":
                reads.add("weighted_variants")
            assert reads <= tracked, (ws.name, stage.name, reads - tracked)


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
        train_rl(get_family("toy"), layout, GRPOParams(), ModelsParams(), "toy")
    assert str(layout.model_dir("base")) in str(err.value) and "dvc repro base" in str(err.value)
