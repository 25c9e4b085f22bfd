"""Study workspaces: the family seam, the stage registry and `rlvr init` for a user's own pair.

The built-in workspaces' generated files are current; a pair workspace made from two local
checkpoint directories (tiny real models built here) and a prompt file runs no family stage
and depends on no other family's code; every bad input of `rlvr init` stops it before a byte is
written; a hub id resolves offline through a hub-cache layout built here; a new family is one
module. The end-to-end run of a workspace (`dvc repro`, report, `rlvr sql`) is slow.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import rlvr.families
from rlvr.cli import main as rlvr_main
from rlvr.decisive.positions import DecisiveParams
from rlvr.families import get_family, names
from rlvr.models.loading import save_model
from rlvr.pipeline import stages
from rlvr.study import load_study
from rlvr.testbed.fit import check_grader_fits, check_labeller_fits
from rlvr.testbed.prompts import PromptRecord
from rlvr.workspace import write_pipeline
from tests.repo_copy import run as run_tool
from tests.repo_copy import tool_env

ROOT = Path(__file__).resolve().parents[1]
TOY_PROMPTS = [{"prompt": "sum 1 2 :", "answer": "3"}, {"prompt": "sum 4 5 6 :", "answer": "15"}]


def test_built_in_workspaces_are_generated_from_the_registry():
    """`make test` fails when a committed dvc.yaml or prefect.yaml (or a tracked section of
    params.yaml) differs from what the stage registry writes."""
    for ws in (ROOT, ROOT / "real"):
        stale = write_pipeline(ws, check=True)
        assert not stale, f"{stale}: stale; run `rlvr pipeline {ws.relative_to(ROOT) or '.'}`"


def test_the_families_and_their_pipelines():
    assert names() == ["pair", "smollm2", "toy"]
    toy = [s.name for s in stages(load_study(ROOT / "params.yaml"))]
    assert toy == ["prepare", "base", "rl", "sft", "sample", "score", "evaluate", "analyze",
                   "cross_sample", "decisive", "weighted_run", "weighted_summary", "report"]
    real = [s.name for s in stages(load_study(ROOT / "real/params.yaml"))]
    assert real == toy  # the same flows: only the family (and its defaults) differ
    assert get_family("smollm2").builds == ("base", "rl", "sft")
    assert get_family("toy").builds == ("base", "rl", "sft", "rft")
    assert get_family("pair").builds == ()


@pytest.fixture
def pair_dirs(tmp_path, tiny_pair, tokenizer):
    """Two local checkpoint directories (tiny real models) and a JSONL prompt file."""
    for name, model in zip(("base", "tuned"), tiny_pair, strict=True):
        save_model(model, tokenizer, tmp_path / "models" / name)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in TOY_PROMPTS))
    return tmp_path


def _init(tmp: Path, *more: str) -> int:
    return rlvr_main(["init", str(tmp / "ws"), "--base", str(tmp / "models/base"),
                      "--tuned", f"dapo={tmp / 'models/tuned'}", "--prompts",
                      str(tmp / "prompts.jsonl"), "--grader", "toy", "--labeller", "digits",
                      *more])


def test_init_writes_a_pair_workspace_with_no_family_stage(pair_dirs):
    assert _init(pair_dirs, "--set", "sample.max_new_tokens=8") == 0
    ws = pair_dirs / "ws"
    own = yaml.safe_load((ws / "params.yaml").read_text())
    assert own["family"] == "pair" and own["sample"] == {"max_new_tokens": 8}
    assert own["models"]["named"]["dapo"] == {"path": str(pair_dirs / "models/tuned"),
                                              "role": "rl"}
    study = load_study(ws / "params.yaml")
    assert [s.name for s in stages(study)] == ["prepare", "sample", "score", "evaluate",
                                               "analyze", "cross_sample", "decisive", "report"]
    dvc_yaml = (ws / "dvc.yaml").read_text()
    assert "families/toy.py" not in dvc_yaml and "rlvr/smollm2" not in dvc_yaml
    assert str(pair_dirs / "models/tuned") in dvc_yaml  # the user's checkpoints are deps
    assert str(pair_dirs / "prompts.jsonl") in dvc_yaml  # and so is the prompt file
    assert (ws / ".dvc").is_dir() and (ws / ".gitignore").read_text().startswith("/data/")
    # the model-naming knobs come from the roster: nobody had to name `dapo` twice
    assert study.section(DecisiveParams, "decisive").tuned == "dapo"
    deployments = yaml.safe_load((ws / "prefect.yaml").read_text())["deployments"]
    assert deployments[0]["name"] == "ws" and deployments[0]["parameters"]["repo"] == str(ws)
    assert write_pipeline(ws, check=True) == []


@pytest.mark.parametrize("args,message", [
    (["--grader", "math"], "`task.grader`: `math` on the toy testbed's prompts accepts answers "
                           "the toy grader rejects on purpose"),
    (["--labeller", "answer"], "`task.labeller`: `answer` reads natural text, but every prompt "
                               "is the toy testbed's"),
    (["--tuned", "x=/no/such/dir"], "no such directory"),
    (["--checkpoint", "ten=/x"], "--checkpoint 'ten=/x': write it as STEP=PATH"),
    (["--set", "sample.n_per_prompt=0"], "params.yaml `sample.n_per_prompt`: must be >= 1"),
])
def test_init_stops_before_writing_anything(pair_dirs, args, message, capsys):
    assert _init(pair_dirs, *args) == 1
    assert message in capsys.readouterr().err
    assert not (pair_dirs / "ws").exists()


FIT = [  # (grader, labeller, prompts, the error's words or None)
    ("toy", "steps", TOY_PROMPTS, None),
    ("answer", "answer", [{"prompt": "What is 2+2?", "answer": "4"}], None),
    ("math", "none", [{"prompt": "Solve x+1=2.", "answer": "\\frac{2}{2}"}], None),
    ("toy", "digits", [{"prompt": "What is 2+2?", "answer": "4"}], "is not a toy prompt"),
    ("answer", "answer", [{"prompt": "What is it?", "answer": "four"}], "cannot grade the answer"),
    ("answer", "steps", [{"prompt": "What is 2+2?", "answer": "4"}], "is natural text"),
]


@pytest.mark.parametrize("grader,labeller,rows,error", FIT)
def test_grader_and_labeller_fit_the_prompts(grader, labeller, rows, error):
    records = [PromptRecord(f"p{i}", r["prompt"], r["answer"]) for i, r in enumerate(rows)]
    if error is None:
        check_grader_fits(grader, records, "task.grader")
        check_labeller_fits(labeller, records, "task.labeller")
        return
    with pytest.raises(ValueError, match=error):
        check_grader_fits(grader, records, "task.grader")
        check_labeller_fits(labeller, records, "task.labeller")


def test_hub_id_resolves_offline_to_a_pinned_snapshot(pair_dirs, monkeypatch, tiny_model,
                                                     tokenizer):
    """`--base org/name@main`: the snapshot of that revision in a hub-cache layout (built
    here, as huggingface_hub writes it) becomes the path, recorded with its commit."""
    cache = pair_dirs / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--org--tiny"
    save_model(tiny_model, tokenizer, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    assert rlvr_main(["init", str(pair_dirs / "ws"), "--base", "org/tiny@main", "--tuned",
                      f"dapo={pair_dirs / 'models/tuned'}", "--prompts",
                      str(pair_dirs / "prompts.jsonl"), "--grader", "toy",
                      "--labeller", "digits"]) == 0
    base = yaml.safe_load((pair_dirs / "ws/params.yaml").read_text())["models"]["named"]["base"]
    assert base == {"path": str(repo / "snapshots" / commit), "hub": f"org/tiny@{commit}"}
    assert rlvr_main(["init", str(pair_dirs / "ws2"), "--base", "org/tiny@v9", "--tuned",
                      f"dapo={pair_dirs / 'models/tuned'}", "--prompts",
                      str(pair_dirs / "prompts.jsonl")]) == 1  # not in the cache: an error
    assert not (pair_dirs / "ws2").exists()


NEW_FAMILY = '''
"""A family made in a test: the toy's task and base, no RL, no controls."""
from rlvr.families import Family
from rlvr.families.toy import FAMILY as TOY

FAMILY = Family(name="tiny", summary="a test family", task=TOY.task, prepare=TOY.prepare,
                grader=TOY.grader, labeller=TOY.labeller, build_base=TOY.build_base,
                base_sections=TOY.base_sections, base_outputs=TOY.base_outputs,
                base_splits=TOY.base_splits, defaults={"sample": {"n_per_prompt": 2}})
'''


def test_a_new_family_is_one_module(tmp_path, monkeypatch):
    (tmp_path / "tiny.py").write_text(NEW_FAMILY)
    monkeypatch.setattr(rlvr.families, "__path__", [*rlvr.families.__path__, str(tmp_path)])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(rlvr.families, "module_name", lambda name: name if name == "tiny"
                        else f"rlvr.families.{name}")
    assert "tiny" in names()
    (tmp_path / "params.yaml").write_text("family: tiny\n")
    study = load_study(tmp_path / "params.yaml")
    assert [s.name for s in stages(study)][:3] == ["prepare", "base", "sample"]
    assert study.raw("sample") == {"n_per_prompt": 2}


def _readme_example() -> list[str]:
    """The commands of the README's "Your own pair" block, in order."""
    text = (ROOT / "README.md").read_text().split("## Your own pair")[1]
    return text.split("```bash\n")[1].split("```")[0].strip().splitlines()


@pytest.mark.slow
def test_the_readme_example_end_to_end(pair_dirs):
    """The README's "Your own pair" commands as written, on a tiny pair in a temporary folder
    (its paths, the toy grader and small sizes substituted): init, `dvc repro` reaching the
    report with no family stage, `rlvr --data ... sql`; then a changed checkpoint makes the
    stages that read it stale (content, not mtimes)."""
    init, repro, sql = _readme_example()
    swap = {"/models/base": str(pair_dirs / "models/base"),
            "/models/rl": str(pair_dirs / "models/tuned"),
            "my_prompts.jsonl": str(pair_dirs / "prompts.jsonl"),
            "my-study": str(pair_dirs / "my-study")}
    for old, new in swap.items():
        init, repro, sql = (c.replace(old, new) for c in (init, repro, sql))
    small = ["--grader", "toy", "--labeller", "digits", "--set", "sample.max_new_tokens=12",
             "--set", "cross_sample={n_prompts: 2, samples_per_prompt: 1, seeds: [0], "
             "directions: [forward], rules: [js, random], budgets: [0.2], "
             "calibration_rounds: 1, max_new_tokens: 12, n_bootstrap: 20}",
             "--set", "decisive={n_prompts: 2, samples_per_prompt: 1, rollouts: 4, "
             "n_bootstrap: 20}"]
    assert rlvr_main(shlex.split(init)[1:] + small) == 0
    ws = pair_dirs / "my-study"
    env = tool_env(pair_dirs, PYTHONPATH=str(ROOT))
    run = subprocess.run(repro, shell=True, cwd=pair_dirs, env=env, capture_output=True,
                         text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    ran = [line.split("'")[1] for line in run.stdout.splitlines()
           if line.startswith("Running stage")]
    assert ran == ["prepare", "sample", "score", "evaluate", "analyze", "cross_sample",
                   "decisive", "report"]
    assert (ws / "data/report/index.html").stat().st_size > 10_000
    models = json.loads((ws / "data/metrics/models.json").read_text())
    assert set(models) == {"base", "rl"} and "gain_over_base" in models["rl"]
    findings = json.loads((ws / "data/metrics/findings.json").read_text())
    assert "--checkpoint" in findings["evolution"]["this_run"]  # says what a finding needs
    out = subprocess.run([sys.executable, "-m", "rlvr.cli", *shlex.split(sql)[1:]],
                         cwd=pair_dirs, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "base__rl" in out.stdout, out.stderr
    assert run_tool(["dvc", "status"], ws, env).stdout.strip() == (
        "Data and pipelines are up to date.")
    config = pair_dirs / "models/tuned/config.json"
    config.write_text(config.read_text().replace("\n}", ',\n  "note": "edited"\n}'))
    status = run_tool(["dvc", "status"], ws, env).stdout
    assert "sample:" in status and "prepare:" not in status
