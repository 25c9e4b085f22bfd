"""The `rlvr` console script: query round trips in every format, and the bad-query path."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlvr.cli import main
from rlvr.store.atomic import MARKER

QUERY = "select pair, count(*) as n, avg(js) as mean_js from tokens group by pair order by pair"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for pair, js in (("base__rl", [0.0, 0.2, 0.4]), ("base__sft", [0.1, 0.3])):
        part = root / "tokens" / f"pair={pair}" / "generator=base"
        part.mkdir(parents=True)
        pq.write_table(pa.table({"tuned_kind": [pair[6:]] * len(js), "rl_step": [None] * len(js),
                                 "position": list(range(len(js))), "js": js,
                                 "token_text": ["a, \"b\""] * len(js)}), part / "p.parquet")
    (root / "tokens" / MARKER).write_text("ok\n")
    return root


def rlvr(data: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--data", str(data), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


EXPECTED = pd.DataFrame({"pair": ["base__rl", "base__sft"], "n": [3, 2], "mean_js": [0.2, 0.2]})


def test_table_format_is_aligned(data, capsys):
    code, out, _ = rlvr(data, capsys, "sql", QUERY)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["pair", "n", "mean_js"]
    assert lines[1].split()[:2] == ["base__rl", "3"] and lines[-1] == "(2 rows)"
    assert len({len(line) for line in lines[:3]}) == 1  # columns padded to one width


def test_csv_and_json_round_trip(data, capsys):
    code, out, _ = rlvr(data, capsys, "sql", "--format", "csv", QUERY)
    assert code == 0
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(out)), EXPECTED)
    code, out, _ = rlvr(data, capsys, "sql", "--format", "json", QUERY)
    assert code == 0
    pd.testing.assert_frame_equal(pd.DataFrame(json.loads(out)), EXPECTED)
    # quoting survives a CSV round trip
    code, out, _ = rlvr(data, capsys, "sql", "--format", "csv",
                        "select distinct token_text from tokens")
    assert pd.read_csv(io.StringIO(out)).token_text.tolist() == ['a, "b"']


def test_parquet_output(data, capsys, tmp_path):
    path = tmp_path / "out.parquet"
    code, _, _ = rlvr(data, capsys, "sql", "--format", "parquet", "--output", str(path), QUERY)
    assert code == 0
    pd.testing.assert_frame_equal(pq.read_table(path).to_pandas(), EXPECTED)
    code, _, err = rlvr(data, capsys, "sql", "--format", "parquet", QUERY)
    assert code == 1 and "--output" in err


def test_named_query_with_params(data, capsys):
    code, out, _ = rlvr(data, capsys, "sql", "--format", "csv", "@agg_sparsity",
                        "--param", "thresholds=[0.15]")
    got = pd.read_csv(io.StringIO(out))
    assert code == 0 and got.set_index("pair").share_above.to_dict() == {
        "base__rl": pytest.approx(2 / 3), "base__sft": pytest.approx(1 / 2)}


def test_tables_describe_setup(data, capsys):
    code, out, _ = rlvr(data, capsys, "tables")
    assert code == 0 and out.split() == ["stg_pair_js", "5", "stg_pairs", "2", "tokens", "5"]
    code, out, _ = rlvr(data, capsys, "describe", "tokens")
    assert code == 0 and "Jensen-Shannon" in out
    code, _, err = rlvr(data, capsys, "describe", "nope")
    assert code == 1 and "no view 'nope'" in err
    code, out, _ = rlvr(data, capsys, "setup")
    assert code == 0 and out.startswith("create or replace view tokens")


def test_bad_query_exits_nonzero_without_traceback(data, capsys):
    code, out, err = rlvr(data, capsys, "sql", "select nope from tokens")
    assert code == 1 and out == ""
    assert err.splitlines() == [
        'error: Binder Error: Referenced column "nope" not found in FROM clause!',
        "hint: `rlvr describe VIEW` lists each view's columns"]
    # the README's first query as it once read: DuckDB has no avg(BOOLEAN)
    code, _, err = rlvr(data, capsys, "sql", "select avg(js > 0.1) from tokens")
    assert code == 1 and err.splitlines()[1:] == [
        "hint: cast a condition to average or sum it, e.g. avg((js > 0.1)::int)"]
    code, out, _ = rlvr(data, capsys, "sql", "--format", "csv",
                        "select pair, avg((js > 0.1)::int) as share from tokens group by all "
                        "order by all")
    assert code == 0 and out.splitlines()[1:] == ['"base__rl",0.6666666666666666',
                                                  '"base__sft",0.5']


def test_incomplete_or_absent_table_names_its_stage(data, tmp_path, capsys):
    shutil.copytree(data, tmp_path / "d")
    (tmp_path / "d" / "tokens" / MARKER).unlink()  # the score stage is rewriting it
    code, _, err = rlvr(tmp_path / "d", capsys, "sql", "select count(*) from tokens")
    assert code == 1 and err.splitlines() == [
        f"error: table `tokens` is not complete ({tmp_path / 'd' / 'tokens'}): run the score "
        "stage (dvc repro score)", "hint: `rlvr tables` lists the views"]
    code, _, err = rlvr(tmp_path / "d", capsys, "sql", "select * from stg_pairs")
    assert code == 1 and "table `tokens` is not complete" in err
    code, _, err = rlvr(data, capsys, "describe", "cross_tokens")
    assert code == 1 and err == (f"error: table `cross_tokens` has not been produced ("
                                 f"{data / 'cross' / 'tokens'}): run the cross_sample stage "
                                 "(dvc repro cross_sample)\n")


def test_nested_values_in_csv_and_json(data, capsys):
    query = "select [1, 2] as ids, {'a': 'x, y'} as s, 0.5 as v"
    code, out, _ = rlvr(data, capsys, "sql", "--format", "csv", query)
    assert code == 0 and out == '"ids","s","v"\n"[1,2]","{""a"":""x, y""}",0.5\n'
    code, out, _ = rlvr(data, capsys, "sql", "--format", "json", query)
    assert json.loads(out) == [{"ids": [1, 2], "s": {"a": "x, y"}, "v": 0.5}]
    code, out, _ = rlvr(data, capsys, "sql", "--format", "json", "select 1 as a where false")
    assert json.loads(out) == []


PEAK = """
import resource, sys
from rlvr.cli import main
code = main(sys.argv[1:])
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr)
"""


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_large_results_stream(data, fmt, tmp_path):
    """3M rows take about as much memory as one row (5M through pandas took 2.0-2.5 GB)."""
    def peak_mb(rows: int) -> int:
        query = (f"select i, i * 0.5 as x, 'token ' || mod(i, 1000)::varchar as t from "
                 f"range({rows}) t(i)")
        out = ["--output", str(tmp_path / f"out.{fmt}")] if fmt == "parquet" else []
        proc = subprocess.run([sys.executable, "-c", PEAK, "--data", str(data), "sql",
                               "--format", fmt, *out, query], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=300)
        code, mb = proc.stderr.split()[-2:]
        assert code == "0", proc.stderr
        return int(mb)

    small, large = peak_mb(1), peak_mb(3_000_000)
    assert large - small < 200, (small, large)
    if fmt == "parquet":
        assert pq.read_metadata(tmp_path / "out.parquet").num_rows == 3_000_000


def test_console_script(data):
    """The installed entry point, as a user runs it."""
    exe = shutil.which("rlvr", path=str(Path(sys.executable).parent))
    assert exe, "the `rlvr` console script is not installed (pip install -e .)"
    bad = subprocess.run([exe, "--data", str(data), "sql", "selec 1"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and "Parser Error" in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stdout == ""
    good = subprocess.run([exe, "--data", str(data), "sql", "--format", "csv", QUERY],
                          capture_output=True, text=True, timeout=60)
    assert good.returncode == 0
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(good.stdout)), EXPECTED)
