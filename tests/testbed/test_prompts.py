"""Prompt files: valid files load, bad ones are rejected naming the row; encoding is exact."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlvr.testbed.prompts import (
    encode_prompts,
    load_prompt_file,
    n_shards,
    prompt_shard,
    task_prompts,
)


def _jsonl(tmp_path, rows, name="p.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_and_parquet_load_alike(tmp_path) -> None:
    rows = [{"prompt": "sum 1 2 :", "answer": 3, "prompt_id": "a"},
            {"prompt": "sum 4 :", "answer": "4"}]
    from_jsonl = load_prompt_file(_jsonl(tmp_path, rows))
    pq.write_table(pa.Table.from_pylist([{**r, "answer": str(r["answer"])} for r in rows]),
                   tmp_path / "p.parquet")
    from_parquet = load_prompt_file(tmp_path / "p.parquet")
    assert [r.prompt_id for r in from_jsonl] == ["a", "p000002"]  # default id from the row
    assert [r.answer for r in from_jsonl] == ["3", "4"] == [r.answer for r in from_parquet]


BAD = [
    # (rows, expected message)
    ([{"prompt": "sum 1 :"}], r"row 1: missing column\(s\) \['answer'\]"),
    ([{"answer": 1}], r"row 1: missing column\(s\) \['prompt'\]"),
    ([{"prompt": "sum 1 :", "answer": 1}, {"prompt": "  ", "answer": 2}], r"row 2: empty prompt"),
    ([{"prompt": "x", "answer": 1, "prompt_id": "q"},
      {"prompt": "y", "answer": 2, "prompt_id": "q"}],
     r"row 2: duplicate prompt_id 'q' \(first seen at row 1\)"),
    ([{"prompt": "x", "answer": None}], r"row 1: empty answer"),
]


@pytest.mark.parametrize("rows,message", BAD)
def test_bad_files_name_file_and_row(tmp_path, rows, message) -> None:
    path = _jsonl(tmp_path, rows)
    with pytest.raises(ValueError, match=message) as err:
        load_prompt_file(path)
    assert str(path) in str(err.value)


def test_bad_json_line_and_unknown_type(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "answer": 1}\n{oops\n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        load_prompt_file(path)
    (tmp_path / "p.csv").write_text("prompt,answer\n")
    with pytest.raises(ValueError, match="unknown prompt file type"):
        load_prompt_file(tmp_path / "p.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_prompt_file(tmp_path / "missing.jsonl")


def test_toy_encoding_has_bos_and_chat_template_is_applied(tokenizer) -> None:
    records = task_prompts(n_eval=3, seed=0, min_digits=4, max_digits=5)
    ids = encode_prompts(records, tokenizer)
    for rec, row in zip(records, ids, strict=True):
        assert row[0] == tokenizer.bos_token_id
        assert tokenizer.convert_ids_to_tokens(row[1:]) == rec.prompt.split()
    # the same vocabulary with a chat template
    templated = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer,
                                    bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    templated.chat_template = "<bos>{% for m in messages %}{{ m['content'] }} :{% endfor %}"
    row = encode_prompts(records[:1], templated)[0]
    # the template's own BOS, no second one added by the tokenizer
    assert row.count(tokenizer.bos_token_id) == 1
    assert tokenizer.convert_ids_to_tokens(row) == ["<bos>", *records[0].prompt.split(), ":"]


def test_shards_cover_prompts_once() -> None:
    records = task_prompts(n_eval=10, seed=0, min_digits=4, max_digits=5)
    shards = [prompt_shard(records, s, 4) for s in range(n_shards(records, 4))]
    assert [len(s) for s in shards] == [4, 4, 2]
    assert [r for s in shards for r in s] == records
