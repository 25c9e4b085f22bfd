"""The warehouse: which parquet files count as complete, the views, and the setup snippet."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlvr.store.atomic import MARKER
from rlvr.warehouse.views import (
    COLUMNS,
    complete_files,
    connect,
    describe,
    row_counts,
    setup_sql,
    views,
)

ISSUE3_TOKEN_COLUMNS = (
    "pair generator prompt_id sample_id position n_tokens token_id token_text role reward "
    "logprob_base logprob_tuned delta_logprob entropy_base entropy_tuned js js_top_p "
    "kl_base_tuned kl_tuned_base rank_base rank_tuned top1_base top1_tuned "
    "rank_in_base_of_top1_tuned prob_base_of_top1_tuned topk_overlap_1 topk_overlap_2 "
    "topk_overlap_3 topk_overlap_4 topk_overlap_5"
).split()


def put(path: Path, **cols) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


def mark(path: Path) -> None:
    (path / MARKER).write_text("ok\n")


def test_complete_files_rules(tmp_path):
    root = tmp_path / "tokens"
    done = put(root / "pair=a" / "generator=base" / "part-0.parquet", js=[0.1])
    put(root / "pair=a" / "generator=base" / ".part-1.parquet.tmp-1234", js=[0.3])  # in flight
    assert complete_files(root) == []  # no marker yet: the stage is still writing
    mark(root)
    assert complete_files(root) == [done]
    single = put(tmp_path / "weighted" / "training.parquet", x=[1])  # renamed into place
    assert complete_files(single) == [single]
    assert complete_files(tmp_path / "missing") == []


@pytest.fixture
def data(tmp_path) -> Path:
    for pair, n in (("base__rl", 3), ("base__rl_step_5", 2)):
        for generator in ("base", "tuned"):
            put(tmp_path / "tokens" / f"pair={pair}" / f"generator={generator}" / "p.parquet",
                tuned_kind=["checkpoint" if "step" in pair else "rl"] * n,
                rl_step=pa.array([5 if "step" in pair else None] * n, pa.int32()),
                prompt_id=["p0"] * n, sample_id=[0] * n, position=list(range(n)),
                js=[0.05 * i for i in range(n)])
    mark(tmp_path / "tokens")
    put(tmp_path / "samples" / "samples.parquet", model=["base", "rl"], prompt_id=["p0", "p0"],
        sample_id=[0, 0], reward=[0, 1])
    mark(tmp_path / "samples")
    return tmp_path


def test_views_and_counts(data):
    con = connect(data)
    # no cross/training tables yet; stg_pair_js: base__rl's 2 x 3 positions (the other pair
    # is a checkpoint)
    assert views(con) == ["samples", "stg_pair_js", "stg_pairs", "tokens"]
    assert row_counts(con) == {"samples": 2, "stg_pair_js": 6, "stg_pairs": 2, "tokens": 10}
    got = con.sql("select pair, rl_step from stg_pairs order by pair").fetchall()
    assert got == [("base__rl", None), ("base__rl_step_5", 5)]


def test_setup_sql_opens_the_same_views_elsewhere(data):
    fresh = duckdb.connect()  # what a notebook or the duckdb CLI would run
    for statement in setup_sql(data):
        fresh.sql(statement)
    assert row_counts(fresh) == row_counts(connect(data))
    assert all(s.startswith(("create or replace view", "create or replace macro"))
               for s in setup_sql(data))


def test_describe_documents_every_column(data):
    rows = {c: (t, d) for c, t, d in describe(connect(data), "tokens")}
    assert rows["js"][0] == "DOUBLE" and "Jensen-Shannon" in rows["js"][1]
    assert rows["pair"][0] == "VARCHAR"  # from the hive partition path
    assert rows["kl_base_tuned"][0] == "(absent)"  # documented, not in this small table
    assert set(ISSUE3_TOKEN_COLUMNS) <= set(COLUMNS["tokens"])
