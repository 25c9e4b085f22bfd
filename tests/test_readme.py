"""The README's commands run, so the documentation cannot rot: every command of its ```bash
blocks is run here against tables the stages wrote (the `rlvr` commands, `rlvr shell` and the
views of `rlvr setup` included), or dry-run (`make` targets: the real ones install a venv),
or is listed in ELSEWHERE with the test that runs it; its ```yaml blocks parse as params; the
files its layout tree names exist. A new command fails `test_every_command_is_run_somewhere`
until it is run or listed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from rlvr.cli import main
from rlvr.config import from_section
from tests.test_config import SECTIONS, WORKSPACE_SECTIONS

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "README.md").read_text()

# commands run by slow end-to-end tests rather than here (prefix -> where)
ELSEWHERE = {
    "export PREFECT_API_URL": "the `served` fixture of tests/test_orchestration_e2e.py",
    "prefect deployment run": "test_deployment_run_via_worker (tests/test_orchestration_e2e.py)",
    # the "Your own pair" block, run as written on a tiny pair in a temporary folder
    "rlvr init my-study": "test_the_readme_example_end_to_end (tests/test_workspaces.py)",
    "cd my-study": "test_the_readme_example_end_to_end (tests/test_workspaces.py)",
    "rlvr --data my-study": "test_the_readme_example_end_to_end (tests/test_workspaces.py)",
    # the seed grid: two seeds of the tiny pipeline (the README's runs take hours)
    "python -m flows.seeds": "test_two_seeds_of_the_tiny_pipeline (tests/test_seeds.py)",
}


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", TEXT, flags=re.S)


def commands() -> list[list[str]]:
    """Every command of the README's bash blocks as an argument list (continuations joined)."""
    out = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            args = shlex.split(line, comments=True)
            if args:
                out.append(args)
    return out


def test_every_command_is_run_somewhere():
    for args in commands():
        text = " ".join(args)
        assert args[0] in ("rlvr", "make") or text.startswith(tuple(ELSEWHERE)), (
            f"README command `{text}` is not run by any test: run it in tests/test_readme.py "
            "or list it in ELSEWHERE")


def rlvr(data: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--data", str(data), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rlvr_commands_run_on_real_tables(scored_data, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where `--output out.parquet` and `> views.sql` land
    runs = [a for a in commands() if a[0] == "rlvr" and a[1] != "shell"
            and not " ".join(a).startswith(tuple(ELSEWHERE))]
    assert len(runs) == 8
    for args in runs:
        redirect = args[args.index(">") + 1] if ">" in args else None
        code, out, err = rlvr(scored_data, capsys, *(args[1:args.index(">")] if redirect
                                                     else args[1:]))
        assert code == 0 and (out or err.startswith("wrote ")), (args, err)
        if redirect:
            Path(redirect).write_text(out)
    js = np.concatenate([pq.read_table(f, columns=["js"]).column("js").to_numpy()
                         for f in (scored_data / "tokens").rglob("part-*.parquet")])
    written = pq.read_table(tmp_path / "out.parquet")
    assert written.num_rows == (js > 0.1).sum() and "token_text" in written.column_names
    code, out, _ = rlvr(scored_data, capsys, *runs[2][1:])
    assert out.split()[:3] == ["pair", "generator", "share_divergent"]
    # `rlvr setup > views.sql`, then the file in a plain DuckDB session (run from the data's
    # parent: the views name paths relative to it, as the duckdb CLI would be run)
    monkeypatch.chdir(scored_data.parent)
    con = duckdb.connect()
    con.execute((tmp_path / "views.sql").read_text())
    assert con.sql("select count(*) from tokens").fetchall()[0][0] == len(js)


def test_rlvr_shell_opens_the_views(scored_data):
    assert ["rlvr", "shell"] in commands()
    run = subprocess.run(
        [sys.executable, "-c", "from rlvr.cli import main; main()", "--data", str(scored_data),
         "shell"], input="print('rows', con.sql('select count(*) from tokens').fetchall()[0][0])\n",
        capture_output=True, text=True, timeout=120)
    rows = sum(pq.read_metadata(f).num_rows for f in (scored_data / "tokens").rglob("*.parquet"))
    assert run.returncode == 0 and f"rows {rows}" in run.stdout, run.stderr


def test_make_targets_exist():
    """Every `make <target>` the README names (blocks and prose) is a target of the Makefile;
    dry runs (`make -n`), since the real targets install a venv first."""
    targets = sorted(set(re.findall(r"\bmake ([a-z][\w-]*)", TEXT)))
    assert {"reproduce", "test", "test-slow", "serve", "stop", "vllm-env"} <= set(targets)
    for target in targets:
        run = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, env={**os.environ, "MAKEFLAGS": ""})
        assert run.returncode == 0, f"make {target}: {run.stderr}"


def test_yaml_blocks_are_valid_params():
    for block in blocks("yaml"):
        for section, values in yaml.safe_load(block).items():
            if section in WORKSPACE_SECTIONS:  # family, weighted_variants: the study's own
                continue
            from_section(SECTIONS[section], {section: values}, section)


def test_layout_tree_names_files_that_exist():
    """The tree of the Layout section: each path at a line's start, and each `name.py:` of a
    package's lines, exists (placeholders like `<stage>` aside)."""
    tree = TEXT.split("## Layout")[1].split("```")[1]
    folder, missing = None, []
    for line in tree.splitlines():
        if line and not line.startswith(" "):
            paths = [p.strip() for p in re.split(r"\s{2,}", line)[0].split(",")]
            missing += [p for p in paths if "<" not in p and not (ROOT / p).exists()]
            folder = paths[0] if paths[0].endswith("/") else None
        if folder:
            missing += [f"{folder}{m}" for m in re.findall(r"(\w+\.py):", line)
                        if not (ROOT / folder / m).exists()]
    assert not missing, missing


@pytest.mark.slow  # a Prefect temporary server: ~20 s idle, ~70 s on a loaded 2-core machine
def test_a_flow_runs_as_the_readme_says(tmp_path):
    """`python -m flows.<stage>` is what dvc.yaml runs: the cheapest stage, prepare, from a
    directory holding only params.yaml."""
    assert "`python -m flows.<stage>`" in TEXT
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["task"].update(n_train=64, n_eval=8)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, "-m", "flows.prepare"], cwd=tmp_path, text=True,
                         capture_output=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert pq.read_metadata(tmp_path / "data/task/eval.parquet").num_rows == 8
