"""The real pair's task: a stable disjoint split, chat prompts, and how responses are described."""

from __future__ import annotations

import pytest

from rlvr.config import ParamsError
from rlvr.layout import Layout
from rlvr.smollm2.task import (
    ArithmeticParams,
    Problem,
    describe_response,
    make_split,
    prepare_task,
    problem_of,
)
from rlvr.testbed.answers import grade_answer
from rlvr.testbed.model import build_tokenizer
from rlvr.testbed.prompts import encode_prompts, load_prompt_file

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_split_is_disjoint_stable_and_complete():
    task = ArithmeticParams(n_eval=20)
    split = make_split(task)
    ids = {name: [p.prompt_id for p in problems] for name, problems in split.items()}
    assert [len(ids[n]) for n in ("demo", "eval", "train")] == [1, 20, 512 - 21]
    assert not (set(ids["eval"]) & set(ids["train"])) and not (set(ids["demo"]) & set(ids["eval"]))
    assert make_split(task) == split  # blake2b order, no hash(): the same in every process
    assert make_split(ArithmeticParams(n_eval=20, seed=1))["eval"] != split["eval"]
    assert len(make_split(ArithmeticParams(n_eval=20, n_train=7))["train"]) == 7


def test_problem_and_reference_solution_grade_right():
    p = Problem(7, 8, 3)
    assert (p.answer, p.prompt_id, p.question) == (59, "mad_7_8_3", "What is 7 times 8 plus 3?")
    assert p.solution == "7 × 8 = 56, 56 + 3 = 59\nAnswer: 59"
    assert grade_answer(p.solution, str(p.answer)) == 1
    assert problem_of(p.prompt_id) == p


def test_bad_task_params_name_the_key():
    with pytest.raises(ParamsError, match="n_eval"):
        ArithmeticParams(low=2, high=3, n_eval=10)  # 8 problems only
    with pytest.raises(ParamsError, match="low"):
        ArithmeticParams(low=5, high=4)


DESCRIBE_CASES = [
    # (response, expected true keys)
    ("7 × 8 = 56, 56 + 3 = 59\nAnswer: 59",
     {"has_answer_line", "canonical", "wrote_product", "product_right", "wrote_sum",
      "sum_uses_product", "sum_right", "answer_is_sum", "lenient_right"}),
    # wrong product, then a consistent sum
    ("7 × 8 = 54, 54 + 3 = 57\nAnswer: 57",
     {"has_answer_line", "wrote_product", "wrote_sum", "sum_uses_product", "sum_right",
      "answer_is_sum"}),
    # right product, wrong addition
    ("7 × 8 = 56, 56 + 3 = 60\nAnswer: 60",
     {"has_answer_line", "wrote_product", "product_right", "wrote_sum", "sum_uses_product",
      "answer_is_sum"}),
    # rambling without the marker, right number last
    ("7 times 8 = 56 and then 59", {"wrote_product", "product_right", "lenient_right"}),
]


@pytest.mark.parametrize(("text", "true_keys"), DESCRIBE_CASES)
def test_describe_response(text, true_keys):
    got = describe_response(Problem(7, 8, 3), text)
    assert {k for k, v in got.items() if v} == true_keys


def test_prepare_writes_prompt_files_with_context(tmp_path):
    layout = Layout(tmp_path)
    counts = prepare_task(layout, ArithmeticParams(n_eval=6, n_train=10, demos=2))
    assert counts == {"demo": 2, "train": 10, "eval": 6}
    records = load_prompt_file(layout.split("eval"), key="")
    assert len(records) == 6 and records[0].context[0][0] == "system"
    assert [r for r, _ in records[0].context] == ["system", "user", "assistant"] * 1 + [
        "user", "assistant"]
    tokenizer = build_tokenizer()
    tokenizer.chat_template = CHATML
    messages = [{"role": r, "content": c} for r, c in records[0].context]
    messages.append({"role": "user", "content": records[0].prompt})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.count("<|im_start|>assistant") == 3  # two demonstrations + the generation prompt
    assert text.endswith(f"{records[0].prompt}<|im_end|>\n<|im_start|>assistant\n")
    assert encode_prompts(records[:1], tokenizer) == [
        tokenizer(text, add_special_tokens=False)["input_ids"]]
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        encode_prompts(records[:1], tokenizer)
