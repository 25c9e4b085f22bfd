"""The table registry: one entry per table feeds the writer, the warehouse, `rlvr describe`
and the gates; readers refuse a table that is not complete."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from rlvr.layout import Layout
from rlvr.store.registry import SAMPLES, TABLES, TableIncomplete
from rlvr.store.tables import mark_complete, part_path, write_part

ROOT = Path(__file__).resolve().parents[2]


def _samples(model: str, n: int) -> dict[str, list]:
    return {"model": [model] * n, "model_kind": ["base"] * n, "rl_step": [None] * n,
            "prompt_id": ["p0"] * n, "sample_id": list(range(n)), "prompt": ["1+1"] * n,
            "answer": ["2"] * n, "prompt_token_ids": [[1, 2]] * n,
            "response_token_ids": [[3, 4]] * n, "response_text": ["2"] * n, "n_tokens": [2] * n,
            "finish_reason": ["eos"] * n, "reward": [1] * n,
            "sampling_logprobs": [[-0.5, -0.25]] * n, "temperature": [1.0] * n,
            "top_p": [1.0] * n, "max_new_tokens": [8] * n, "seed": [0] * n}


def test_reader_refuses_an_incomplete_table_naming_path_and_stage(tmp_path) -> None:
    layout = Layout(tmp_path / "data")
    with pytest.raises(TableIncomplete, match=r"has not been produced .*samples.*dvc repro "
                                              r"sample"):
        SAMPLES.read(layout)
    part = part_path(layout.samples_dir / "model=base", 0)
    write_part([pa.table(_samples("base", 3), schema=SAMPLES.schema)], part, SAMPLES.schema, "k")
    with pytest.raises(TableIncomplete, match=r"is not complete .*run the sample stage"):
        SAMPLES.read(layout, model="base")  # written, not yet marked: still being written
    mark_complete(layout.samples_dir)
    table = SAMPLES.read(layout, ["sample_id", "reward"], model="base")
    assert table.column("sample_id").to_pylist() == [0, 1, 2] and table.num_rows == 3
    assert SAMPLES.files(layout) == [part]
    with pytest.raises(TableIncomplete, match="no rows of model=rl"):
        SAMPLES.files(layout, model="rl")


def test_a_jobs_partition_folder_reads_like_the_layouts(tmp_path) -> None:
    """Jobs carry partition folders and part files: the same files, the same refusals."""
    layout = Layout(tmp_path / "data")
    folder = layout.samples_dir / "model=base"
    write_part([pa.table(_samples("base", 2), schema=SAMPLES.schema)], part_path(folder, 0),
               SAMPLES.schema, "k")
    with pytest.raises(TableIncomplete, match=r"`samples` is not complete .*dvc repro sample"):
        SAMPLES.partition_files(folder)
    mark_complete(layout.samples_dir)
    assert SAMPLES.partition_files(folder) == SAMPLES.files(layout, model="base")
    with pytest.raises(TableIncomplete, match="no rows of model=rl"):
        SAMPLES.partition_files(layout.samples_dir / "model=rl")
    with pytest.raises(AssertionError, match="not a partition folder of table `samples`"):
        SAMPLES.partition_files(layout.samples_dir)
    got = SAMPLES.read_files(SAMPLES.partition_files(folder), ["sample_id"])
    assert got.equals(SAMPLES.read(layout, ["sample_id"], model="base"))
    assert got.column("sample_id").to_pylist() == [0, 1]
    with pytest.raises(AssertionError, match=r"`samples` has no columns \['js'\]"):
        SAMPLES.read_files(SAMPLES.partition_files(folder), ["js"])


def test_every_table_documents_every_column_once() -> None:
    for table in TABLES.values():
        assert len(set(table.schema.names)) == len(table.schema.names), table.name
        assert set(table.keys) <= set(table.schema.names), table.name
        assert all(table.docs.values()), table.name
        assert set(table.keys) <= set(table.required), table.name  # keys are never null


# run in a copy of the package whose registry has one more token-table column
SCRIPT = r"""
import json, math, subprocess, sys
import pandas as pd
from rlvr.layout import Layout
from rlvr.models.specs import ModelsParams
from rlvr.report.blocks import ReportOptions, ReportParams
from rlvr.report.page import render_page
from rlvr.store.gates import GateFailed, check_tokens
from rlvr.store.tables import TOKENS_SCHEMA, mark_complete, part_path, to_table, write_part
from rlvr.warehouse.views import connect

import rlvr
layout = Layout(sys.argv[1])
columns = json.loads(sys.argv[2]) | {"judge_score": [0.25, 0.75]}  # the column's computation
part = part_path(layout.tokens_dir / "pair=base__rl" / "generator=tuned", 0)
write_part([to_table(columns, TOKENS_SCHEMA)], part, TOKENS_SCHEMA, "k")
mark_complete(layout.tokens_dir)
view = {r[0]: r[1] for r in connect(layout.root).sql("describe tokens").fetchall()}
described = subprocess.run([sys.executable, "-m", "rlvr.cli", "--data", str(layout.root),
                            "describe", "tokens"], capture_output=True, text=True).stdout
df = pd.read_parquet(part)
check_tokens(df, "tokens", 8, None)  # good values pass
try:
    check_tokens(df.assign(judge_score=[0.25, None]), "tokens", 8, None)
    gate = "passed"
except GateFailed as e:
    gate = str(e)
page = render_page(ReportOptions(ReportParams(responses_per_group=1, viewer_pairs=[]),
                                 ModelsParams(), layout)).html()
viewer = page.split('<section id="viewer">')[1].split("</section>")[0]
print(json.dumps({"package": rlvr.__file__, "type": view.get("judge_score"),
                  "described": described, "gate": gate, "viewer": viewer}))
"""


def _tokens(n: int) -> dict[str, list]:
    """One response of `n` tokens where both models agree: every invariant of the gate holds."""
    lp = [math.log(0.5)] * n
    return {"pair": ["base__rl"] * n, "generator": ["tuned"] * n, "tuned_kind": ["rl"] * n,
            "rl_step": [None] * n, "prompt_id": ["p0"] * n, "sample_id": [0] * n,
            "position": list(range(n)), "n_tokens": [n] * n, "token_id": [3, 4][:n],
            "token_text": ["a", "b"][:n], "role": [None] * n, "reward": [1] * n,
            "logprob_base": lp, "logprob_tuned": lp, "delta_logprob": [0.0] * n,
            "entropy_base": [1.0] * n, "entropy_tuned": [1.0] * n, "js": [0.0] * n,
            "kl_base_tuned": [0.0] * n, "kl_tuned_base": [0.0] * n, "rank_base": [1] * n,
            "rank_tuned": [1] * n, "top1_base": [3, 4][:n], "top1_tuned": [3, 4][:n],
            "rank_in_base_of_top1_tuned": [1] * n, "rank_in_tuned_of_top1_base": [1] * n,
            "prob_base_of_top1_tuned": [0.5] * n, "js_top_p": [0.0] * n,
            **{f"topk_overlap_{k}": [1.0] * n for k in range(1, 6)}}


def test_a_new_registry_column_reaches_views_describe_gates_and_report(tmp_path) -> None:
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "rlvr", copy / "rlvr", ignore=ignore)
    shutil.copytree(ROOT / "sql", copy / "sql", ignore=ignore)
    registry = copy / "rlvr/store/registry.py"
    entry = '    col("js", F32, "Jensen-Shannon divergence base vs tuned'
    text = registry.read_text()
    assert text.count(entry) == 1
    # the one edit: a never-null column of the token table
    registry.write_text(text.replace(entry, '    col("judge_score", F32, "a judge\'s score of '
                                     'the token, in [0, 1]"),\n' + entry))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "data"),
                           json.dumps(_tokens(2))], cwd=copy, capture_output=True,
                          text=True, env={"PYTHONPATH": str(copy), "HF_HUB_OFFLINE": "1",
                                          "PATH": str(Path(sys.executable).parent)},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(got["package"]).is_relative_to(copy)  # the edited copy, not this tree
    assert got["type"] == "FLOAT"
    assert "judge_score" in got["described"] and "a judge's score" in got["described"]
    assert "1 of 2 rows fail" in got["gate"] and "judge_score is null" in got["gate"], \
        got["gate"]
    # the report's token viewer: each token's hover carries the new column's value
    assert got["viewer"].count("judge_score 0.25") == 1, got["viewer"][-2000:]
    assert got["viewer"].count("judge_score 0.75") == 1
