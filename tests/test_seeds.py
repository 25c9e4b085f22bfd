"""The seed grid (rlvr/seeds.py, flows/seeds.py): which knobs a seed shifts, the seed
workspaces (a real DVC project each), and the spread of accuracies and verdicts over seeds.
The end-to-end run of two seeds of the tiny pipeline is slow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlvr.config import ParamsError
from rlvr.layout import Layout
from rlvr.seeds import (
    check_seeds,
    collect,
    make_seed_workspace,
    merge_texts,
    seed_dir,
    seed_keys,
    summarize_seeds,
)
from rlvr.study import load_study
from rlvr.training.grpo import GRPOParams
from tests.repo_copy import copy_repo, run, tool_env


def _workspace(tmp: Path, text: str) -> Path:
    (tmp / "params.yaml").write_text(text)
    return tmp


def test_a_seed_shifts_every_training_seed_of_the_family(tmp_path):
    toy = load_study(_workspace(tmp_path, "family: toy\nrl: {seed: 5}\n") / "params.yaml")
    assert seed_keys(toy) == ["model.seed", "pretrain.seed", "rl.seed", "sft.seed"]
    real = load_study(Path(__file__).resolve().parents[1] / "real" / "params.yaml")
    assert seed_keys(real) == ["rl.seed", "sft.seed"]  # the converted base has no seed
    check_seeds(toy, [0, 1, 2])
    with pytest.raises(ValueError, match="--seeds: need distinct seeds"):
        check_seeds(toy, [0, 0])


def test_a_family_that_trains_nothing_has_no_seed_grid(tmp_path):
    pair = load_study(_workspace(tmp_path, "family: pair\n") / "params.yaml")
    assert seed_keys(pair) == []
    with pytest.raises(ParamsError, match=r"params.yaml `family`: the pair family trains no"):
        check_seeds(pair, [0, 1])


def test_seed_workspace_is_the_workspace_plus_shifted_seeds(tmp_path):
    own = ("family: toy\nweighted_variants:\n  baseline: {divergence: none}\n"
           "rl: {seed: 5, steps: 3}\nsample: {n_per_prompt: 2}\n")
    ws = _workspace(tmp_path, own)
    assert make_seed_workspace(ws, 0) == ws  # seed 0 is the workspace itself
    seed2 = make_seed_workspace(ws, 2)
    assert seed2 == seed_dir(ws, 2) == ws / "seeds" / "seed_2"
    params = yaml.safe_load((seed2 / "params.yaml").read_text())
    assert params["rl"] == {"seed": 7, "steps": 3}  # the workspace's own seed + 2
    assert params["model"]["seed"] == params["pretrain"]["seed"] == params["sft"]["seed"] == 2
    assert params["sample"] == {"n_per_prompt": 2}
    assert params["weighted_variants"] == {"baseline": {"divergence": "none"}}
    study = load_study(seed2 / "params.yaml")
    assert study.section(GRPOParams, "rl").seed == 7
    # a DVC project of its own, without git, whose generated stages point at this checkout
    config = (seed2 / ".dvc" / "config").read_text()
    assert "no_scm = true" in config
    stages = yaml.safe_load((seed2 / "dvc.yaml").read_text())["stages"]
    assert all((seed2 / dep).resolve().exists() for dep in stages["rl"]["deps"]
               if not dep.startswith("data/"))
    status = run(["dvc", "status", "rl"], seed2, tool_env(tmp_path))
    assert "rl:" in status.stdout  # DVC reads it: rl has never run there
    # rewritten from the workspace: an edit there reaches the seed; data/ is left alone
    (seed2 / "data").mkdir()
    (seed2 / "data" / "kept").write_text("x")
    (ws / "params.yaml").write_text(own.replace("steps: 3", "steps: 4"))
    make_seed_workspace(ws, 2)
    assert yaml.safe_load((seed2 / "params.yaml").read_text())["rl"]["steps"] == 4
    assert (seed2 / "data" / "kept").read_text() == "x"


def test_merge_texts_keeps_equal_numbers_and_lists_the_others():
    texts = ["JS > 0.01 at 16.7% of positions (JS > 0.1: 7.6%)",
             "JS > 0.01 at 15.1% of positions (JS > 0.1: 7.6%)",
             "JS > 0.01 at 18.0% of positions (JS > 0.1: 8.2%)"]
    assert merge_texts(texts) == ("JS > 0.01 at 16.7/15.1/18.0% of positions "
                                  "(JS > 0.1: 7.6/7.6/8.2%)")
    assert merge_texts(["k3 +4.0 [-9.7, +17.8]", "k3 -1.0 [-9.7, +2.0]"]) == \
        "k3 +4.0/-1.0 [-9.7, +17.8/+2.0]"
    other = ["Jaccard 0.2 -> 0.8", "Jaccard 0.2 -> 0.5 -> 0.9"]  # different shapes: both
    assert merge_texts(other) == "Jaccard 0.2 -> 0.8 | Jaccard 0.2 -> 0.5 -> 0.9"


def _metrics(ws: Path, k: int, acc: dict[str, float], verdict: str, share: float) -> None:
    metrics = Layout(seed_dir(ws, k) / "data").metrics("models").parent
    metrics.mkdir(parents=True, exist_ok=True)
    models = {m: {"accuracy": a} | ({} if m == "base" else
                                    {"gain_over_base": {"gain": a - acc["base"]}})
              for m, a in acc.items()}
    (metrics / "models.json").write_text(json.dumps(models))
    (metrics / "findings.json").write_text(json.dumps({"sparsity": {
        "reproduces": verdict, "this_run": f"JS > 0.01 at {100 * share:.1f}% of positions",
        "rule": "r"}}))


def test_summary_spreads_match_numpy(tmp_path):
    ws = tmp_path
    rng = np.random.default_rng(0)
    acc = rng.uniform(0.1, 0.9, size=(3, 2))
    for k in range(3):
        _metrics(ws, k, {"base": acc[k, 0], "rl": acc[k, 1]},
                 ["yes", "partly", "yes"][k], [0.1, 0.2, 0.3][k])
    summary = summarize_seeds(ws, [0, 1, 2], {0: 10.0, 1: 20.0, 2: 30.0})
    for j, model in enumerate(["base", "rl"]):
        s = summary["accuracy"][model]
        assert s["values"] == pytest.approx(list(acc[:, j]))
        assert s["mean"] == pytest.approx(acc[:, j].mean())
        assert s["sd"] == pytest.approx(acc[:, j].std(ddof=1))
        assert (s["min"], s["max"]) == (pytest.approx(acc[:, j].min()),
                                        pytest.approx(acc[:, j].max()))
    gain = acc[:, 1] - acc[:, 0]
    assert summary["gain_over_base"]["rl"]["sd"] == pytest.approx(gain.std(ddof=1))
    assert "base" not in summary["gain_over_base"]
    finding = summary["findings"]["sparsity"]
    assert finding["verdicts"] == ["yes", "partly", "yes"]
    assert (finding["modal"], finding["agree"]) == ("yes", pytest.approx(2 / 3))
    assert finding["this_run"] == "JS > 0.01 at 10.0/20.0/30.0% of positions"
    written = json.loads((ws / "seeds" / "summary.json").read_text())
    assert written["wall_seconds"] == {"0": 10.0, "1": 20.0, "2": 30.0}
    md = (ws / "seeds" / "summary.md").read_text()
    assert "| sparsity | yes / partly / yes |" in md
    assert f"{100 * acc[:, 1].mean():.1f} ± {100 * acc[:, 1].std(ddof=1):.1f}" in md


def test_summary_needs_every_seed_run(tmp_path):
    _metrics(tmp_path, 0, {"base": 0.5}, "yes", 0.1)
    with pytest.raises(FileNotFoundError, match="seed 1: no .*models.json; run its pipeline"):
        collect(tmp_path, [0, 1])
    one = collect(tmp_path, [0])
    assert one["accuracy"]["base"]["sd"] is None and not math.isnan(one["accuracy"]["base"]["mean"])


@pytest.mark.slow
def test_two_seeds_of_the_tiny_pipeline(tmp_path):
    """`python -m flows.seeds --seeds 2 evaluate` on a copy with tiny params: seed 1 trains
    other models (other hashes) from the same prompts, the summary lists both seeds' accuracies,
    and a second run redoes nothing."""
    repo = copy_repo(tmp_path / "repo", tmp_path / "remote")
    env = tool_env(tmp_path)
    cmd = ["python", "-m", "flows.seeds", "--seeds", "2", "evaluate"]
    run(cmd, repo, env, timeout=1500)
    locks = [yaml.safe_load((seed_dir(repo, k) / "dvc.lock").read_text())["stages"]
             for k in (0, 1)]

    def digest(lock: dict, stage: str, path: str) -> str:
        return next(o["md5"] for o in lock[stage]["outs"] if o["path"] == path)

    assert digest(locks[0], "prepare", "data/task") == digest(locks[1], "prepare", "data/task")
    for stage, path in (("base", "data/models/base"), ("rl", "data/models/rl")):
        assert digest(locks[0], stage, path) != digest(locks[1], stage, path)
    summary = json.loads((repo / "seeds" / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["findings"] == {}
    assert set(summary["accuracy"]) >= {"base", "rl", "sft"}
    for k in (0, 1):
        models = json.loads((seed_dir(repo, k) / "data/metrics/models.json").read_text())
        assert summary["accuracy"]["rl"]["values"][k] == models["rl"]["accuracy"]
    again = run(cmd, repo, env, timeout=900)
    assert "Running stage" not in again.stdout + again.stderr
