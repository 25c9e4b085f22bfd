"""Config validation of the family sections: bad values name the params.yaml key and the fix."""

from __future__ import annotations

import pandas as pd
import pytest

from rlvr.config import (
    EvaluateConfig,
    ModelConfig,
    PretrainConfig,
    RLConfig,
    SFTConfig,
    TaskConfig,
    from_section,
)
from rlvr.testbed.digits import make_split
from rlvr.testbed.split import prepare_split
from rlvr.training.family import train_rl

BAD_VALUES = [
    (RLConfig, "rl", {"group_size": 1}, "rl.group_size"),  # no group to normalise within
    (RLConfig, "rl", {"lr": -1e-3}, "rl.lr"),  # negative learning rate
    (RLConfig, "rl", {"clip_low": 1.0}, "rl.clip_low"),  # ratio floor at zero
    (RLConfig, "rl", {"clip_high": -0.1}, "rl.clip_high"),
    (RLConfig, "rl", {"kl_coef": -0.01}, "rl.kl_coef"),
    (RLConfig, "rl", {"steps": 0}, "rl.steps"),
    (RLConfig, "rl", {"minibatches": 1000, "prompts_per_step": 2, "group_size": 2},
     "rl.minibatches"),
    (PretrainConfig, "pretrain", {"lr": 0.0}, "pretrain.lr"),
    (PretrainConfig, "pretrain", {"warmup_steps": 10, "steps": 5}, "pretrain.warmup_steps"),
    (SFTConfig, "sft", {"lr": -1.0}, "sft.lr"),
    (SFTConfig, "sft", {"rft_samples": 0}, "sft.rft_samples"),
    (EvaluateConfig, "evaluate", {"models": []}, "evaluate.models"),
    (EvaluateConfig, "evaluate", {"n_samples": 0}, "evaluate.n_samples"),
    (ModelConfig, "model", {"architecture": "gpt9"}, "model.architecture"),  # unknown arch
    (TaskConfig, "task", {"p_chain": 1.5}, "task.p_chain"),
    (RLConfig, "rl", {"group_sise": 8}, "rl.group_sise"),  # typo: unknown key
]


@pytest.mark.parametrize("cls,section,values,key", BAD_VALUES)
def test_bad_values_name_the_key_and_a_fix(cls, section, values, key):
    with pytest.raises(ValueError) as err:
        from_section(cls, {section: values}, section)
    message = str(err.value)
    assert f"`{key}`" in message and "params.yaml" in message
    assert ";" in message  # problem; fix


def test_defaults_are_valid():
    for cls, section in [(TaskConfig, "task"), (ModelConfig, "model"), (PretrainConfig, "pretrain"),
                         (RLConfig, "rl"), (SFTConfig, "sft"), (EvaluateConfig, "evaluate")]:
        from_section(cls, {}, section)


def test_eval_file_overlapping_train_is_rejected(tmp_path):
    task = TaskConfig(n_train=200, n_eval=20)
    train, _ = make_split(task.n_train, task.n_eval, task.seed, task.min_digits, task.max_digits)
    user = tmp_path / "eval.jsonl"
    pd.DataFrame({"prompt": ["sum 1 2 3 4 5 6 7 8 9 :", train[5].prompt]}).to_json(
        user, orient="records", lines=True)
    with pytest.raises(ValueError, match=r"task\.eval_prompts.*also train prompts"):
        prepare_split(TaskConfig(n_train=200, n_eval=20, eval_prompts=str(user)), tmp_path / "t")
    assert not (tmp_path / "t" / "train.parquet").exists()  # nothing written on a bad config


def test_disjoint_eval_file_is_used(tmp_path):
    user = tmp_path / "eval.csv"
    pd.DataFrame({"prompt": ["sum 1 2 3 4 5 6 7 8 9 :", "sum 9 9 9 9 9 9 9 9 9 :"]}).to_csv(
        user, index=False)
    out = tmp_path / "task"
    summary = prepare_split(TaskConfig(n_train=200, n_eval=20, eval_prompts=str(user)), out)
    assert summary == {"n_train": 200, "n_eval": 2}
    table = pd.read_parquet(out / "eval.parquet")
    assert list(table.columns) == ["prompt_id", "prompt", "answer", "n_digits"]
    assert table["answer"].tolist() == ["45", "81"] and table["n_digits"].tolist() == [9, 9]


def test_malformed_eval_prompt_names_the_key(tmp_path):
    user = tmp_path / "eval.csv"
    pd.DataFrame({"prompt": ["what is 2 + 2?"]}).to_csv(user, index=False)
    with pytest.raises(ValueError, match=r"task\.eval_prompts.*not a task prompt"):
        prepare_split(TaskConfig(eval_prompts=str(user)), tmp_path / "t")


def test_missing_base_model_names_path_and_stage(tmp_path):
    prepare_split(TaskConfig(n_train=50, n_eval=5), tmp_path / "task")
    missing = tmp_path / "models" / "base"
    with pytest.raises(FileNotFoundError) as err:
        train_rl(missing, tmp_path / "task" / "train.parquet", tmp_path / "rl",
                 tmp_path / "rl_steps", tmp_path / "log.csv", RLConfig())
    assert str(missing) in str(err.value) and "pretrain" in str(err.value)
