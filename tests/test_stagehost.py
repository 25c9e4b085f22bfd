"""rlvr.stagehost through rlvr.dvc.run_dvc: stage commands forwarded over a real socket run in this
process with their argv, cwd and DVC_* env, exit codes and one-line errors come back, and what a
stage changes (cwd, env, torch threads and seed) does not leak into the next."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch

from rlvr import dvc, stagehost

# a stage module: records what it saw, changes process state, fails on request like a stage
STAGE = """
import json, os, sys
import torch
from rlvr.config import require, run_main

def main():
    # a check of the library fails (a ValueError raised elsewhere would keep its traceback)
    require(sys.argv[1:] != ["--bad"], "toy.n", "must be >= 1", "use a positive count")
    if sys.argv[1:] == ["--alloc"]:  # 400 MB touched, then freed
        block = torch.ones(100_000_000)
        del block
        return
    with open("seen.json", "w") as f:
        json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "stage": os.environ["DVC_STAGE"],
                   "threads": torch.get_num_threads(), "draw": torch.rand(1).item()}, f)
    torch.set_num_threads(1)
    torch.manual_seed(123)
    os.environ["DVC_STAGE"] = "changed"

if __name__ == "__main__":
    run_main(main)
"""

# what `python -m flows <stage>` does: forward, or say it is not hosted
CLIENT = """
import os, sys
from rlvr.stagehost import forward
os.environ["DVC_STAGE"] = sys.argv[1]
rc = forward(["toy_stage", *sys.argv[2:]])
print("not hosted" if rc is None else f"rc={rc}")
sys.exit(rc or 0)
"""


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "toy_stage.py").write_text(STAGE)
    (tmp_path / "client.py").write_text(CLIENT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    return tmp_path


def _client(*args: str) -> list[str]:
    return [sys.executable, "client.py", *args]


def test_hosted_stages_run_here_and_start_fresh(repo):
    lines: list[str] = []
    threads, cwd = torch.get_num_threads(), os.getcwd()
    script = f"{' '.join(_client('first', '--x'))} && {' '.join(_client('second'))}"
    dvc.run_dvc(["bash", "-c", script], repo, lines.append, host=stagehost.run_module)
    assert lines == ["rc=0", "rc=0"]
    seen = __import__("json").loads((repo / "seen.json").read_text())
    assert seen["argv"] == [] and seen["stage"] == "second" and seen["cwd"] == str(repo)
    # the second stage saw torch as the first did, not as the first left it
    assert seen["threads"] == threads and torch.get_num_threads() == threads
    torch.manual_seed(torch.initial_seed())
    assert seen["draw"] == torch.rand(1).item()
    assert os.getcwd() == cwd and os.environ.get("DVC_STAGE") is None


def test_a_failing_hosted_stage_reports_its_one_line_error(repo):
    lines: list[str] = []
    with pytest.raises(dvc.StageFailed, match=r"error: params.yaml `toy.n`: must be >= 1"):
        dvc.run_dvc(_client("make", "--bad"), repo, lines.append, host=stagehost.run_module)
    assert lines[-1] == "rc=2"  # the exit code of `one_line_errors`, as a stage process


def test_each_hosted_stage_reports_its_own_time_and_peak_memory(repo, capfd):
    before = stagehost.memory()["rss_gb"]
    script = f"{' '.join(_client('big', '--alloc'))} && {' '.join(_client('small'))}"
    dvc.run_dvc(["bash", "-c", script], repo, lambda _: None, host=stagehost.run_module)
    err = capfd.readouterr().err
    found = re.findall(r"stage (\w+): ([\d.]+) s, peak RSS ([\d.]+) GB, ([\d.]+) GB after", err)
    assert [f[0] for f in found] == ["big", "small"]
    (_, _, big_peak, big_after), (_, _, small_peak, _) = [f for f in found]
    assert float(big_peak) >= before + 0.38  # the 400 MB block counts in its stage's peak
    assert float(big_after) < float(big_peak) - 0.3  # and is gone when the stage ends
    assert float(small_peak) < float(big_peak) - 0.3  # the next stage's peak is its own


def test_without_a_host_the_command_runs_itself(repo):
    lines: list[str] = []
    dvc.run_dvc(_client("make"), repo, lines.append)
    assert lines == ["not hosted"]
    # a host for another checkout is not this one's (e.g. `dvc exp run --temp` copies)
    other = repo / "copy"
    other.mkdir()
    (other / "client.py").write_text(CLIENT)
    with stagehost.listening(repo) as (_, env):
        done = __import__("subprocess").run(_client("make"), cwd=other, capture_output=True,
                                            text=True, env=os.environ | env)
    assert done.stdout.strip() == "not hosted"
