"""Fault injection for bad INPUTS: each bad prompt file, model or leftover of a killed run is
planted in a copy of data/ that the stages wrote, and the stage that reads it is run. Every one
stops before it touches an output: one exact line naming the params key or file and the fix,
and every file under data/ byte-identical afterwards. Bad params values are tests/test_config.py's
(one line each, `python -m flows.prepare` exits 2 and writes nothing); data faults in written
tables are tests/test_faults.py's. The exit code and last line of a real `python -m flows.score`,
and crash recovery under `dvc repro`, are at the end (slow)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from rlvr.cross.sweep import CrossParams
from rlvr.decisive.positions import DecisiveParams
from rlvr.families import get_family
from rlvr.families.pair import PairTask, write_split
from rlvr.families.pair import prepare as prepare_pair
from rlvr.generation.backends import BackendParams
from rlvr.generation.samples import SampleParams, plan_samples
from rlvr.layout import Layout
from rlvr.models.loading import save_model
from rlvr.models.specs import ModelsParams, NamedModel
from rlvr.store.atomic import MARKER
from rlvr.testbed.model import build_tokenizer
from rlvr.testbed.prompts import load_prompt_file
from rlvr.testbed.split import TaskParams, prepare_split
from rlvr.tokens.scorer import ScoreParams
from rlvr.training.family import train_control, train_rl
from rlvr.training.grpo import GRPOParams
from rlvr.training.lm import SFTParams
from rlvr.weighted.grid import WeightedParams
from tasks import cross_sample as cross_tasks
from tasks import decisive as decisive_tasks
from tasks.evaluate import evaluate_task
from tasks.sample import (
    finalize_samples_task,
    gate_samples_task,
    plan_sampling_task,
    sample_shard_task,
)
from tasks.score import finalize_tokens_task, gate_tokens_task, plan_scoring_task, score_shard_task
from tasks.weighted import plan_runs
from tests.repo_copy import copy_repo, tool_env
from tests.repo_copy import run as run_tool

SAMPLE = SampleParams(models=["base", "rl"], checkpoints=False, n_per_prompt=2, max_new_tokens=8,
                      shard_size=3)
SCORE = ScoreParams(tuned=["rl"], checkpoints=False)
CROSS = CrossParams(n_prompts=3, samples_per_prompt=1, seeds=[0], directions=["forward"],
                    rules=["js", "random"], budgets=[0.5], calibration_rounds=1,
                    max_new_tokens=8, n_bootstrap=10)
DECISIVE = DecisiveParams(n_prompts=2, samples_per_prompt=1, rollouts=2, n_bootstrap=10)
MODELS = ModelsParams()
TOY_TASK = TaskParams(testbed="digits", n_train=64, n_eval=6, min_digits=2, max_digits=3)
TOY = get_family("toy")
VOCAB = len(build_tokenizer())  # the tiny models' vocabulary and output head


def run_sample(layout: Layout, cfg: SampleParams = SAMPLE) -> list[dict]:
    """The sample flow's recipe (flows/sample.py), task by task, without the Prefect engine."""
    plan = plan_sampling_task.fn(cfg, MODELS, layout)
    parts = [sample_shard_task.fn(e, s, r, cfg, "toy", BackendParams(), layout)
             for e, s, r in zip(plan["entries"], plan["shards"], plan["records"], strict=True)]
    for model in plan["models"]:
        gate_samples_task.fn(model, layout)
    finalize_samples_task.fn(parts, layout)
    return parts


def run_score(layout: Layout) -> list[dict]:
    """The score flow's recipe (flows/score.py), task by task."""
    plan = plan_scoring_task.fn(SCORE, MODELS, layout)
    parts = [score_shard_task.fn(job, SCORE, "toy", TOY_TASK) for job in plan["jobs"]]
    for partition in plan["partitions"]:
        gate_tokens_task.fn(partition, plan["vocab_size"], layout, SCORE.audit)
    finalize_tokens_task.fn(parts, layout)
    return parts


def run_cross(layout: Layout, prompts: str = "") -> None:
    """The cross_sample flow's recipe (flows/cross_sample.py), task by task."""
    ends, specs, records = cross_tasks.plan_endpoints.fn(CROSS, MODELS, prompts, "error", layout)
    for cell in ends:
        cross_tasks.sample_cell.fn(cell, specs, records, CROSS, "toy", layout)
    pilot = [c for c in ends if c.rule == "none"]
    cells = cross_tasks.plan_round.fn(CROSS, layout, 1, pilot, [])
    for cell in cells:
        cross_tasks.sample_cell.fn(cell, specs, records, CROSS, "toy", layout)
    cross_tasks.publish.fn(layout, ends, cells, CROSS)
    cross_tasks.summarize.fn(layout, CROSS)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_pair, tokenizer) -> Layout:
    """data/ after prepare, a (base, rl) pair of tiny models (64 positions), sample, score,
    cross_sample and evaluate, every table complete."""
    layout = Layout(tmp_path_factory.mktemp("built") / "data")
    prepare_split(TOY_TASK, layout)
    for name, model in zip(("base", "rl"), tiny_pair, strict=True):
        save_model(model, tokenizer, layout.model_dir(name))
    run_sample(layout)
    run_score(layout)
    run_cross(layout)
    evaluate_task.fn("toy", layout)
    return layout


@pytest.fixture
def data(built, tmp_path) -> Layout:
    """A private copy of `built`, to plant a fault in."""
    shutil.copytree(built.root, tmp_path / "data")
    return Layout(tmp_path / "data")


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- planting: each returns what the stage is then run with (its params), or None ----------

def prompts_file(name: str, text: str | bytes) -> Callable[[Layout, Path], dict]:
    """A user prompt file named `name` holding `text` (JSONL rows, or raw bytes)."""
    def plant(layout: Layout, tmp: Path) -> dict:
        path = tmp / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return {"prompts": str(path)}
    return plant


def eval_split(text: str) -> Callable[[Layout, Path], dict]:
    """The eval split holding these JSONL rows (as a pair workspace's prepare writes them,
    without its check that the toy grader fits every prompt)."""
    def plant(layout: Layout, tmp: Path) -> dict:
        (tmp / "p.jsonl").write_text(text)
        write_split(layout, "eval", load_prompt_file(tmp / "p.jsonl"))
        return {}
    return plant


def pair_task(prompts: str) -> PairTask:
    """A pair workspace's task over toy prompts: the toy grader and grammar fit them."""
    return PairTask(prompts=prompts, grader="toy", labeller="digits")


def rows(*items: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in items)


GOOD = {"prompt": "sum 1 2 :", "answer": "3"}
LONG = {"prompt": "sum " + " ".join(["7"] * 3000) + " :", "answer": "21000"}


def edit_weights(name: str, edit: Callable[[dict], None]) -> Callable[[Layout, Path], dict]:
    def plant(layout: Layout, tmp: Path) -> dict:
        path = layout.model_dir(name) / "model.safetensors"
        tensors = load_file(path)
        edit(tensors)
        save_file(tensors, path, metadata={"format": "pt"})
        return {}
    return plant


def nan_at(tensors: dict) -> None:
    tensors["model.layers.0.mlp.up_proj.weight"][0, 0] = float("nan")


def inf_at(tensors: dict) -> None:
    tensors["model.norm.weight"][3] = float("inf")


def rewrite_file(name: str, file: str, content: Callable[[bytes], bytes]):
    def plant(layout: Layout, tmp: Path) -> dict:
        path = layout.model_dir(name) / file
        path.write_bytes(content(path.read_bytes()))
        return {}
    return plant


def remove(rel: str):
    def plant(layout: Layout, tmp: Path) -> dict:
        path = layout.root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        return {}
    return plant


def named_path(path: str | Callable[[Path], str]):
    def plant(layout: Layout, tmp: Path) -> dict:
        where = path(tmp) if callable(path) else path
        return {"models": ModelsParams(named={"rl": NamedModel(path=where)})}
    return plant


def padded_head(layout: Layout, tmp: Path) -> dict:
    model = AutoModelForCausalLM.from_pretrained(layout.model_dir("rl"))
    model.resize_token_embeddings(128)  # rows for tokens the tokenizer does not have
    save_model(model, AutoTokenizer.from_pretrained(layout.model_dir("rl")),
               layout.model_dir("rl"))
    return {}


def other_tokenizer(extra: bool) -> Callable[[Layout, Path], dict]:
    """rl's tokenizer with one more token (`extra`), or of the same size with one token
    renamed (another vocabulary)."""
    def plant(layout: Layout, tmp: Path) -> dict:
        tok = build_tokenizer()
        if extra:
            tok.add_tokens(["<think>"])
        else:
            spec = json.loads(tok.backend_tokenizer.to_str())
            spec["model"]["vocab"]["plus"] = spec["model"]["vocab"].pop("99")
            tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                          bos_token="<bos>", eos_token="<eos>",
                                          pad_token="<pad>", unk_token="<unk>")
        tok.save_pretrained(layout.model_dir("rl"))
        return {}
    return plant


def config_says(name: str, **fields) -> Callable[[Layout, Path], dict]:
    """config.json of model `name` edited (e.g. a vocab_size its weights do not have)."""
    def plant(layout: Layout, tmp: Path) -> dict:
        path = layout.model_dir(name) / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
        return {}
    return plant


def stages(layout: Layout, stage: str, over: dict) -> object:
    """Run `stage` on `layout` up to where it would first write (its checks)."""
    models = over.get("models", MODELS)
    runs = {
        "prepare": lambda: prepare_pair(layout, pair_task(over["prompts"])),
        "sample": lambda: plan_sampling_task.fn(SAMPLE, models, layout),
        "score": lambda: plan_scoring_task.fn(SCORE, models, layout),
        "cross_sample": lambda: cross_tasks.plan_endpoints.fn(CROSS, models, "", "error",
                                                               layout),
        "weighted": lambda: plan_runs.fn(WeightedParams(seeds=1), models, None, layout),
        "rl": lambda: train_rl(TOY, layout, GRPOParams(steps=1), models, "toy"),
        "sft": lambda: train_control(TOY, layout, "sft", TOY_TASK, SFTParams(steps=1), models,
                                     "toy"),
        "decisive": lambda: decisive_tasks.plan_decisive_task.fn(DECISIVE, "toy", models, layout),
    }
    return runs[stage]()


R = "{root}"  # the data root, {tmp} the test's directory: filled in per test
ST = "model.safetensors"
RL_FIX = f"restore it (dvc checkout {R}/models/rl) or rebuild it (dvc repro rl)"
BASE_FIX = f"restore it (dvc checkout {R}/models/base) or rebuild it (dvc repro base)"
KEY = "params.yaml `task.prompts`: {tmp}/p.jsonl"
SPLIT = f"{R}/task/eval.parquet"
DROP = "fix the prompt, or set `sample.unfit_prompts: drop` to skip the 1 of 2 prompts that do " \
       "not fit"
NAN = (f"model `base`: {R}/models/base/{ST}: tensor `model.layers.0.mlp.up_proj.weight` holds "
       f"NaN values (a diverged or corrupted checkpoint); {BASE_FIX}")

CONFIG = (f"model `base`: tensor `model.embed_tokens.weight` in {R}/models/base/{ST} has shape "
          f"[{VOCAB}, 16] but its config.json (vocab_size {VOCAB + 15}, hidden_size 16, "
          "num_hidden_layers 2, num_attention_heads 2, num_key_value_heads 2, head_dim 8, "
          f"intermediate_size 32) implies [{VOCAB + 15}, 16]; use the config.json saved with these "
          "weights")

CASES = [  # (id, plant, stage, the exact message)
    # the 12 malformed prompt files (+ 2 more ways to be unreadable)
    ("prompts-missing", lambda layout, tmp: {"prompts": str(tmp / "nope.jsonl")}, "prepare",
     "params.yaml `task.prompts`: prompt file {tmp}/nope.jsonl does not exist; fix the path"),
    ("prompts-csv", prompts_file("p.csv", "prompt,answer\n"), "prepare",
     "params.yaml `task.prompts`: {tmp}/p.csv: unknown prompt file type '.csv'; use .jsonl or "
     ".parquet"),
    ("prompts-bad-json", prompts_file("p.jsonl", rows(GOOD) + "{oops\n"), "prepare",
     f"{KEY} line 2: not valid JSON (Expecting property name enclosed in double quotes); "
     "write one JSON object per line"),
    ("prompts-not-object", prompts_file("p.jsonl", rows(GOOD) + "[1, 2]\n"), "prepare",
     f"{KEY} line 2: expected a JSON object per line"),
    ("prompts-empty-file", prompts_file("p.jsonl", "\n"), "prepare",
     f"{KEY}: no prompts in the file"),
    ("prompts-no-answer", prompts_file("p.jsonl", rows(GOOD, {"prompt": "sum 1 :"})), "prepare",
     f"{KEY} row 2: missing column(s) ['answer']; every row needs `prompt` and `answer` (and "
     "optionally `prompt_id`)"),
    ("prompts-no-prompt", prompts_file("p.jsonl", rows({"answer": 1})), "prepare",
     f"{KEY} row 1: missing column(s) ['prompt']; every row needs `prompt` and `answer` (and "
     "optionally `prompt_id`)"),
    ("prompts-blank-prompt", prompts_file("p.jsonl", rows(GOOD, {"prompt": " ", "answer": 1})),
     "prepare", f"{KEY} row 2: empty prompt"),
    ("prompts-number-prompt", prompts_file("p.jsonl", rows({"prompt": 12, "answer": 1})),
     "prepare", f"{KEY} row 1: prompt 12 is not text"),
    ("prompts-null-answer", prompts_file("p.jsonl", rows({"prompt": "sum 1 :", "answer": None})),
     "prepare", f"{KEY} row 1: empty answer"),
    ("prompts-duplicate-id", prompts_file("p.jsonl", rows({**GOOD, "prompt_id": "q"},
                                                          {**GOOD, "prompt_id": "q"})),
     "prepare", f"{KEY} row 2: duplicate prompt_id 'q' (first seen at row 1)"),
    ("prompts-empty-id", prompts_file("p.jsonl", rows({**GOOD, "prompt_id": ""})), "prepare",
     f"{KEY} row 1: empty prompt_id"),
    ("prompts-not-parquet", prompts_file("p.parquet", b"PAR1 not really"), "prepare",
     "params.yaml `task.prompts`: {tmp}/p.parquet: not a readable parquet file (corrupt, or "
     "another format); write it with pandas or pyarrow, or use .jsonl"),
    ("prompts-not-utf8", prompts_file("p.jsonl", b'{"prompt": "sum \xff :", "answer": 1}\n'),
     "prepare", f"{KEY}: not UTF-8 text (byte 16); save the file as UTF-8"),
    # prompts that do not fit the models
    ("prompt-overlong", eval_split(rows(GOOD, LONG)), "sample",
     f"{SPLIT} row 2 (prompt_id 'p000002'): 3003 prompt tokens + 8 new tokens exceed the 64 "
     f"positions of model `base`; {DROP}"),
    ("prompt-overlong-cross", eval_split(rows(GOOD, LONG)), "cross_sample",
     f"{SPLIT} row 2 (prompt_id 'p000002'): 3003 prompt tokens + 8 new tokens exceed the 64 "
     f"positions of model `base`; {DROP}"),
    ("prompt-out-of-vocabulary", eval_split(rows(GOOD, {"prompt": "sum 3 plus 4 thirty :",
                                                        "answer": 7})),
     "sample", f"{SPLIT} row 2 (prompt_id 'p000002'): 'plus', 'thirty' not in the vocabulary of "
     f"model `base` (read as <unk>); {DROP}"),
    ("eval-split-missing", remove("task/eval.parquet"), "sample",
     f"no eval split at {R}/task/eval.parquet: run the prepare stage first (dvc repro prepare)"),
    # models
    ("model-path-missing", named_path(lambda tmp: str(tmp / "nope")), "score",
     "params.yaml `models.named.rl.path`: no model at {tmp}/nope (config.json missing): point "
     "params.yaml at a Hugging Face model directory"),
    ("model-not-built", remove("models/rl"), "score",
     f"no model at {R}/models/rl (config.json missing): run the `rl` stage first (dvc repro rl)"),
    ("model-hub-id-offline", named_path("org/name"), "score",
     "params.yaml `models.named.rl.path`: cannot read the config of org/name (OSError: We "
     "couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in "
     "the cached files.); point the key at a whole, local Hugging Face model directory"),
    ("safetensors-truncated", rewrite_file("rl", ST, lambda b: b[: len(b) // 2]), "score",
     f"model `rl`: {R}/models/rl/{ST} is truncated or corrupt (SafetensorError: Error while "
     f"deserializing header: incomplete metadata, file not fully covered); {RL_FIX}"),
    ("safetensors-garbage", rewrite_file("rl", ST, lambda b: b"\0" * len(b)), "score",
     f"model `rl`: {R}/models/rl/{ST} is truncated or corrupt (SafetensorError: Error while "
     f"deserializing header: invalid JSON in header: EOF while parsing a value at line 1 column "
     f"0); {RL_FIX}"),
    ("weights-missing", remove(f"models/rl/{ST}"), "score",
     f"model `rl`: no weights in {R}/models/rl (no *.safetensors or *.bin); {RL_FIX}"),
    ("config-corrupt", rewrite_file("rl", "config.json", lambda b: b[:40]), "score",
     f"model `rl`: cannot read the config of {R}/models/rl (OSError: It looks like the config "
     f"file at '{R}/models/rl/config.json' is not a valid JSON file.); {RL_FIX}"),
    ("tokenizer-corrupt", rewrite_file("rl", "tokenizer.json", lambda b: b"{oops"), "score",
     f"model `rl`: cannot load the tokenizer in {R}/models/rl (JSONDecodeError: Expecting "
     f"property name enclosed in double quotes: line 1 column 2 (char 1)); {RL_FIX}"),
    ("weights-nan", edit_weights("rl", nan_at), "score",
     f"model `rl`: {R}/models/rl/{ST}: tensor `model.layers.0.mlp.up_proj.weight` holds NaN "
     f"values (a diverged or corrupted checkpoint); {RL_FIX}"),
    ("weights-inf", edit_weights("rl", inf_at), "score",
     f"model `rl`: {R}/models/rl/{ST}: tensor `model.norm.weight` holds inf values (a diverged "
     f"or corrupted checkpoint); {RL_FIX}"),
    ("head-padded", padded_head, "score",
     "model `rl`: its output head has 128 rows but the head of `base` ({root}/models/base) has "
     f"{VOCAB} (a padded or resized embedding?); the models of a pair need output heads of one "
     "size: use checkpoints saved with the same vocabulary"),
    ("vocabulary-mismatch", other_tokenizer(extra=False), "score",
     "model `rl`: models of a pair must share a vocabulary, but the tokenizers at "
     f"{R}/models/base and {R}/models/rl differ first at id {VOCAB - 1}: '99' vs 'plus'; pair "
     "models saved with one tokenizer"),
    ("tokenizer-wider-than-head", other_tokenizer(extra=True), "score",
     f"model `rl`: its tokenizer has {VOCAB + 1} tokens but its output head only {VOCAB} rows "
     "(config.json vocab_size); use the tokenizer saved with these weights"),
    ("samples-incomplete", remove(f"samples/{MARKER}"), "score",
     f"table `samples` is not complete ({R}/samples): run the sample stage (dvc repro sample)"),
    ("tokens-incomplete-decisive", remove(f"tokens/{MARKER}"), "decisive",
     f"table `tokens` is not complete ({R}/tokens): run the score stage (dvc repro score)"),
    ("samples-missing-decisive", remove("samples/model=rl"), "decisive",
     "params.yaml `decisive.tuned`: no samples of model 'rl'; add it to `sample.models` and run "
     "`dvc repro sample`"),
    ("pair-not-scored-decisive", remove("tokens/pair=base__rl/generator=tuned"), "decisive",
     "params.yaml `decisive.base`/`decisive.tuned`: no pair 'base__rl' (generator tuned) in the "
     f"token table {R}/tokens; add the models to `score.base`/`score.tuned` and run `dvc repro "
     "score`"),
    ("weights-nan-decisive-tuned", edit_weights("rl", nan_at), "decisive",
     f"model `rl`: {R}/models/rl/{ST}: tensor `model.layers.0.mlp.up_proj.weight` holds NaN "
     f"values (a diverged or corrupted checkpoint); {RL_FIX}"),
    # every stage that loads a model checks it first
    *[(f"weights-nan-{stage}", edit_weights("base", nan_at), stage, NAN)
      for stage in ("sample", "cross_sample", "weighted", "rl", "sft", "decisive")],
    # config.json against the weights' shapes (issue 21: the sample stage cleared its marker,
    # then crashed in transformers), in every stage, whether it reads a pair or one model
    *[(f"config-vocab-vs-head-{stage}", config_says("base", vocab_size=VOCAB + 15), stage,
       CONFIG) for stage in ("sample", "score", "cross_sample", "weighted", "rl", "sft",
                             "decisive")],
    ("config-layers-vs-weights", config_says("rl", num_hidden_layers=3), "sample",
     f"model `rl`: no weight file holds tensor `model.layers.2.self_attn.q_proj.weight` [16, 16], "
     f"which its config.json (vocab_size {VOCAB}, hidden_size 16, num_hidden_layers 3, "
     f"num_attention_heads 2, num_key_value_heads 2, head_dim 8, intermediate_size 32) asks "
     f"for; use the config.json saved with these weights"),
]


@pytest.mark.parametrize("plant,stage,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_stops_the_stage_with_one_line_and_touches_nothing(plant, stage, message,
                                                                     data, tmp_path):
    over = plant(data, tmp_path)
    before = digests(data.root)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        stages(data, stage, over)
    assert str(err.value) == message.format(root=data.root, tmp=tmp_path)
    assert digests(data.root) == before  # no marker cleared, no byte written


README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_shows_the_real_message(data, tmp_path, monkeypatch):
    """The README's example of an overlong prompt is what the stage prints (the truncated
    checkpoint example: `test_flow_prints_one_line_last_and_exits_2`)."""
    monkeypatch.chdir(tmp_path)  # `data` is tmp_path/data
    Path("my_prompts.jsonl").write_text(rows(GOOD, LONG))
    prepare_pair(Layout(), pair_task("my_prompts.jsonl"))  # what `dvc repro prepare` writes
    with pytest.raises(ValueError) as err:
        stages(Layout(), "sample", {})
    assert f"error: {err.value}" in README.read_text().splitlines()


def test_unfit_prompts_dropped_with_a_count(data, tmp_path):
    eval_split(rows(GOOD, LONG, {"prompt": "sum 3 plus 4 :", "answer": 7}, GOOD | {
        "prompt": "sum 2 2 :", "answer": 4}))(data, tmp_path)
    cfg = SampleParams(**{**SAMPLE.__dict__, "unfit_prompts": "drop"})
    plan = plan_samples(cfg, MODELS, data)
    assert plan.dropped == 2 and [r.prompt for r in plan.records] == ["sum 1 2 :", "sum 2 2 :"]
    with pytest.raises(ValueError, match=r"none of the 1 prompts fits the models \(row 1: 3003 "):
        eval_split(rows(LONG))(data, tmp_path)
        plan_samples(cfg, MODELS, data)


def test_debris_of_killed_writes_is_swept_and_finished_parts_kept(data):
    """What a killed run leaves (temporaries of part files, metrics and whole directories) is
    removed when the owning stage runs next; every finished part is kept as it was."""
    parts = {p: p.read_bytes() for p in data.root.glob("*/**/part-*.parquet")}
    debris = [data.tokens_dir / "pair=base__rl/generator=base/.part-00000.parquet.tmp-0badf00d",
              data.samples_dir / "model=rl/.part-00001.parquet.tmp-deadbeef",
              data.root / "metrics/.score.json.tmp-12345678",
              data.root / "quality/.tokens.old-abcdef01/x.json"]
    for path in debris:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    other = data.root / "cross/.samples.tmp-00000000"  # another stage's: not score's to sweep
    other.mkdir()
    assert all(p["skipped"] for p in run_sample(data) + run_score(data))
    assert not any(p.exists() for p in debris) and not debris[-1].parent.exists()
    assert other.exists()
    assert {p: p.read_bytes() for p in data.root.glob("*/**/part-*.parquet")} == parts
    assert (data.samples_dir / MARKER).exists() and (data.tokens_dir / MARKER).exists()


def run_decisive(layout: Layout) -> list[dict]:
    """The decisive flow's recipe (flows/decisive.py), task by task."""
    jobs = decisive_tasks.plan_decisive_task.fn(DECISIVE, "toy", MODELS, layout)
    runs = [decisive_tasks.measure_task.fn(job, DECISIVE, "toy") for job in jobs]
    decisive_tasks.publish_task.fn(layout, runs, DECISIVE)
    decisive_tasks.detection_task.fn(layout, DECISIVE, runs)
    return runs


def test_decisive_sweeps_its_debris_and_keeps_current_parts(data):
    """The decisive stage on the built tables: a killed write's temporary is swept, a rerun
    keeps both generators' part files."""
    first = run_decisive(data)
    assert [r["skipped"] for r in first] == [False, False]
    debris = data.decisive_dir / "positions/model=rl/.part-00000.parquet.tmp-0badf00d"
    debris.write_bytes(b"half")
    parts = {p: p.read_bytes() for p in data.decisive_dir.rglob("part-*.parquet")}
    assert [r["skipped"] for r in run_decisive(data)] == [True, True]
    assert not debris.exists()
    assert {p: p.read_bytes() for p in data.decisive_dir.rglob("part-*.parquet")} == parts
    assert (data.decisive_dir / "positions" / MARKER).exists()
    assert data.metrics("decisive").exists() and data.plot("decisive_detection").exists()


def test_dvc_outputs_are_what_each_stage_owns():
    """What a stage sweeps (Layout.outputs, or its family's stage_outputs) is exactly what the
    generated dvc.yaml says it writes, in every built-in workspace."""
    from rlvr.dvc import read_stages
    from rlvr.layout import ANALYSIS_PLOTS
    from rlvr.study import load_study
    from rlvr.tokens.analysis import PLOTS
    from rlvr.training.family import stage_outputs

    root = Path(__file__).resolve().parents[1]
    layout = Layout(Path("data"))
    for ws in (root, root / "real"):
        study = load_study(ws / "params.yaml")
        variants = study.raw("weighted_variants")
        for name, stage in read_stages(ws / "dvc.yaml").items():
            assert stage.get("foreach", "${weighted_variants}") == "${weighted_variants}"
            for item in variants if "foreach" in stage else [None]:
                body = stage.get("do", stage)
                declared = {next(iter(e)) if isinstance(e, dict) else e
                            for kind in ("outs", "metrics", "plots") for e in body.get(kind, [])}
                owner = f"{name}@{item}" if item else name
                declared = {d.replace("${key}", str(item)) for d in declared}
                owned = (stage_outputs(study.family, layout, name)
                         if name in ("base", "rl", "sft") else layout.outputs(owner))
                assert {str(p) for p in owned} == declared, (ws, owner)
    assert set(PLOTS.values()) == set(ANALYSIS_PLOTS)


def test_flow_prints_one_line_and_starts_no_server(built, tmp_path):
    """`python -m flows.score` on a truncated checkpoint: exit 2 and exactly the library's line
    on stderr (issue 21: two Prefect tracebacks, ~75 lines, and a server start first), no
    server started (the checks run before the flow), nothing touched."""
    root = Path(__file__).resolve().parents[1]
    shutil.copytree(built.root, tmp_path / "data")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["score"].update(tuned=["rl"], checkpoints=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    weights = tmp_path / "data/models/rl" / ST
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    before = digests(tmp_path / "data")
    home = tmp_path / "prefect"
    run = subprocess.run([sys.executable, "-m", "flows.score"], cwd=tmp_path, text=True,
                         capture_output=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(root), "PREFECT_HOME": str(home)})
    line = ("error: model `rl`: data/models/rl/model.safetensors is truncated or corrupt "
            "(SafetensorError: Error while deserializing header: incomplete metadata, file not "
            "fully covered); restore it (dvc checkout data/models/rl) or rebuild it (dvc repro "
            "rl)")
    assert run.returncode == 2 and run.stderr == line + "\n", run.stderr[-3000:]
    assert line in README.read_text().splitlines()
    assert not (home / "server.log").exists()  # no server was started for it
    assert digests(tmp_path / "data") == before


# --- under `dvc repro`: a tiny pipeline copy (tests/repo_copy.py) -------------------------

@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repository with tiny params, `dvc repro score` done (~6 min on 2 cores)."""
    tmp = tmp_path_factory.mktemp("dvc")
    path = copy_repo(tmp / "repo", tmp / "remote")
    env = tool_env(tmp)
    run_tool(["dvc", "repro", "score"], path, env)
    return path, env


def _params(repo: Path, section: str, **values) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("part-*.parquet")}


@pytest.mark.slow
def test_bad_input_under_dvc_repro_leaves_outputs_intact(repo, tmp_path):
    """persist + checks before writes: a failing `dvc repro` deletes and rewrites nothing."""
    path, env = repo
    outs = [path / p for p in ("data/samples", "data/tokens", "data/quality", "data/metrics")]
    before = {str(o): digests(o) if o.is_dir() else None for o in outs}
    weights = path / "data/models/rl" / ST
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    run = run_tool(["dvc", "repro", "--single-item", "score"], path, env, check=False)
    assert run.returncode != 0
    assert ("error: model `rl`: data/models/rl/model.safetensors is truncated or corrupt "
            "(SafetensorError: Error while deserializing header: incomplete metadata, file not "
            "fully covered); restore it (dvc checkout data/models/rl) or rebuild it (dvc repro "
            "rl)") in run.stderr.splitlines()
    weights.write_bytes(good)
    original = (path / "params.yaml").read_text()
    (tmp_path / "p.jsonl").write_text(rows(GOOD, {"prompt": "what is 1 + 2?"}))
    _params(path, "task", eval_prompts=str(tmp_path / "p.jsonl"))
    run = run_tool(["dvc", "repro", "--single-item", "prepare"], path, env, check=False)
    assert run.returncode != 0 and (
        "error: params.yaml `task.eval_prompts`: 'what is 1 + 2?' is not a task prompt; write "
        "`sum 3 5 7 :` (digits 1-9 between `sum` and `:`)") in run.stderr.splitlines()
    (path / "params.yaml").write_text(original)
    assert {str(o): digests(o) if o.is_dir() else None for o in outs} == before
    assert run_tool(["dvc", "status", "score"], path, env).stdout.strip() == (  # and upstream
        "Data and pipelines are up to date.")


@pytest.mark.slow
def test_kill_9_mid_score_then_dvc_repro_resumes(repo):
    """`kill -9` of `dvc repro score` part way: the rerun keeps the parts finished before the
    kill (persist + fingerprints), sweeps the debris, and ends with `dvc status` clean."""
    import signal
    import time

    path, env = repo
    tokens = path / "data/tokens"
    old = _stamps(tokens)
    _params(path, "score", js_top_p=0.65)  # every token part must be redone
    proc = subprocess.Popen(["dvc", "repro", "score"], cwd=path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not (new := {p for p, s in _stamps(tokens).items() if old.get(p) != s}):
            assert proc.poll() is None and time.monotonic() < deadline, "no part was rescored"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (tokens / MARKER).exists()  # the table is marked incomplete while rewritten
    done = {p: s for p, s in _stamps(tokens).items() if p in new}
    assert done and len(done) < len(old), "the kill came too late to test resuming"
    debris = tokens / "pair=base__rl/generator=base/.part-00000.parquet.tmp-0badf00d"
    debris.write_bytes(b"half")  # what a kill inside a write leaves
    run = run_tool(["dvc", "repro", "score"], path, env)
    assert "Running stage 'score'" in run.stdout
    assert all(_stamps(tokens)[p] == s for p, s in done.items())  # kept, not rewritten
    assert not [p for p in (path / "data").rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    assert (tokens / MARKER).exists()
    assert run_tool(["dvc", "status", "score"], path, env).stdout.strip() == (  # and upstream
        "Data and pipelines are up to date.")
