"""Benchmark: the scorer on the real pair (SmolLM2-135M-Instruct base vs its RL sibling).

Run from the repository root after the real pipeline's sample stage (`make reproduce-real`):
`nice -n 15 .venv/bin/python benchmarks/bench_scoring_real.py [--threads 2]`. Workload: the
real run's own responses (real/data/samples, base and rl, 4 per held-out prompt: ~85 prompt
tokens through the chat template, ~27 response tokens, vocabulary 49,152, hidden 576, 30 layers).
Measured in one run, each timing the min of `--reps` interleaved repetitions:
- scorer: `rlvr.tokens.scorer.score_responses`, token-table rows included;
- floor: both models' bare forwards as the scorer runs them (each distinct prompt once, output
  heads at the scored positions), nothing computed from the logits (target: scorer <= 1.25x);
- naive loop: one full forward per response, float64 softmax to numpy, a Python loop per
  position (`bench_scoring.naive`; target: scorer >= 10x), and the naive HF loop a user might
  write first (one forward of the whole prefix per position, no KV cache) on a few responses;
- vLLM `prompt_logprobs` (top-20, the most vLLM returns by default; it cannot give full
  distributions) when `.venv-vllm` exists, else a line saying it was not measured;
- peak RSS of the streaming scorer at two dataset sizes (target: flat).
The scorer's columns are checked against the naive float64 reference.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).parent))
from bench_scoring import floor, naive  # noqa: E402  (the toy benchmark's references)

from rlvr.testbed.answers import label_answer_roles  # noqa: E402
from rlvr.tokens.scorer import Response, ScoreParams, score_responses  # noqa: E402

REAL = Path("real/data")
VLLM_PYTHON = Path(".venv-vllm/bin/python")


def workload(n: int) -> list[Response]:
    """The first n responses of the real run's base and rl samples (whole prompts' groups)."""
    out: list[Response] = []
    for model in ("base", "rl"):
        parts = sorted((REAL / "samples" / f"model={model}").glob("part-*.parquet"))
        if not parts:
            raise SystemExit(f"no samples of {model} under {REAL}/samples: run the real "
                             "pipeline's sample stage first (cd real && dvc repro sample)")
        rows = pa.concat_tables([pq.read_table(p) for p in parts]).to_pylist()
        out += [Response(r["prompt_id"], r["sample_id"], r["prompt_token_ids"],
                         r["response_token_ids"], r["reward"]) for r in rows]
    return out[: n // 2] + out[len(out) // 2 : len(out) // 2 + n // 2]


def load_pair():
    tok = AutoTokenizer.from_pretrained(REAL / "models" / "base")
    models = [AutoModelForCausalLM.from_pretrained(REAL / "models" / m, dtype=torch.float32)
              .eval() for m in ("base", "rl")]
    return tok, *models


@torch.no_grad()
def naive_hf(base, tuned, responses) -> int:
    """A forward of the whole prefix per position and model (no cache): what a first script
    does. Returns the positions scored."""
    n = 0
    for r in responses:
        for t in range(len(r.response_ids)):
            ids = torch.tensor([r.prompt_ids + r.response_ids[:t]])
            for m in (base, tuned):
                torch.log_softmax(m(input_ids=ids).logits[0, -1].double(), -1)
            n += 1
    return n


def child(mode: str, n: int, threads: int, reps: int) -> dict:
    torch.set_num_threads(threads)
    tok, base, tuned = load_pair()
    responses = workload(n)
    params = ScoreParams()
    out = {"mode": mode, "responses": len(responses),
           "tokens": sum(len(r.response_ids) for r in responses),
           "prompt_tokens": float(np.mean([len(r.prompt_ids) for r in responses]))}

    def scorer(rs):
        return list(score_responses(base, tuned, tok, rs, "base__rl", "tuned", params,
                                    label_answer_roles))

    scorer(responses[:8])  # first calls allocate and pick kernels
    if mode == "memory":
        for _ in score_responses(base, tuned, tok, responses, "base__rl", "tuned", params,
                                 label_answer_roles):
            pass
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    sub, tiny = responses[:8], responses[:2]
    times: dict[str, list[float]] = {"scorer": [], "floor": [], "naive": [], "naive_hf": []}
    for rep in range(reps):
        t = time.perf_counter()
        tables = scorer(responses)
        times["scorer"].append(time.perf_counter() - t)
        t = time.perf_counter()
        floor(base, tuned, responses, params, tok.pad_token_id)
        times["floor"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ref = naive(base, tuned, sub, params.js_top_p)
        times["naive"].append(time.perf_counter() - t)
        if rep == 0:  # minutes per repetition: once is enough for a ratio of this size
            t = time.perf_counter()
            out["naive_hf_tokens"] = naive_hf(base, tuned, tiny)
            times["naive_hf"].append(time.perf_counter() - t)
    out.update({k: min(v) for k, v in times.items()}, naive_tokens=len(ref))
    del tables
    # the reference's responses scored on their own: base and rl samples share (prompt, sample)
    # ids, so rows of the timed table cannot be told apart by them
    df = pa.concat_tables(scorer(sub)).to_pandas()
    order = {k: i for i, k in enumerate((r.prompt_id, r.sample_id) for r in sub)}
    df = df.assign(i=[order[k] for k in zip(df.prompt_id, df.sample_id, strict=True)])
    df = df.sort_values(["i", "position"])
    out["max_abs_diff"] = {k: float(np.max(np.abs(df[k].to_numpy(np.float64)
                                                  - np.array([r[k] for r in ref], np.float64))))
                           for k in ("logprob_base", "logprob_tuned", "entropy_base", "js",
                                     "kl_base_tuned", "js_top_p", "rank_base")}
    return out


VLLM_SCRIPT = """
import json, sys, time
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt
rows = json.load(open(sys.argv[2]))
times = {}
for name in ("base", "rl"):
    llm = LLM(model=sys.argv[1] + "/" + name, dtype="float32", enforce_eager=True,
              max_model_len=512, max_logprobs=20)
    params = SamplingParams(max_tokens=1, prompt_logprobs=20)
    prompts = [TokensPrompt(prompt_token_ids=r) for r in rows]
    llm.generate(prompts[:4], params)
    t = time.perf_counter()
    llm.generate(prompts, params)
    times[name] = time.perf_counter() - t
    del llm
print(json.dumps(times))
"""


def vllm_line(responses: list[Response], tokens: int) -> str:
    if not VLLM_PYTHON.exists():
        return ("vLLM prompt_logprobs: not measured (no .venv-vllm here; `make vllm-env` builds "
                "it, then rerun)")
    rows = Path("/tmp/bench_vllm_rows.json")
    rows.write_text(json.dumps([r.prompt_ids + r.response_ids for r in responses]))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}
    proc = subprocess.run([str(VLLM_PYTHON), "-c", VLLM_SCRIPT, str(REAL / "models"),
                           str(rows)], capture_output=True, text=True, check=True, env=env)
    t = json.loads(proc.stdout.strip().splitlines()[-1])
    total = t["base"] + t["rl"]
    return (f"vLLM prompt_logprobs (top-20 only, both models, every prompt re-run per response) "
            f"{tokens / total:,.0f} tok/s")


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[96, 768])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, n, threads, reps = args.child
        print(json.dumps(child(mode, int(n), int(threads), int(reps))))
        return
    small, large = args.sizes
    th = str(args.threads)
    timed = run_child("timing", str(small), th, str(args.reps))
    mem = [run_child("memory", str(n), th, "1") for n in (small, large)]
    tps = {k: timed["tokens"] / timed[k] for k in ("scorer", "floor")}
    naive_tps = timed["naive_tokens"] / timed["naive"]
    hf_tps = timed["naive_hf_tokens"] / timed["naive_hf"]
    print(f"workload: {timed['responses']} real responses (base and rl samples), "
          f"{timed['tokens']} scored tokens, prompts {timed['prompt_tokens']:.0f} tokens, "
          f"vocabulary 49152, {th} torch thread(s), min of {args.reps} interleaved runs")
    print("agreement with the float64 naive reference (max |diff|): "
          + ", ".join(f"{k} {v:.1e}" for k, v in timed["max_abs_diff"].items()))
    print(f"scorer {tps['scorer']:,.1f} tok/s | floor {tps['floor']:,.1f} tok/s | scorer time / "
          f"floor time {timed['scorer'] / timed['floor']:.2f}x (target <= 1.25x)")
    print(f"naive loop {naive_tps:,.1f} tok/s ({timed['naive_tokens']} tokens) | scorer / naive "
          f"{tps['scorer'] / naive_tps:.1f}x (target >= 10x)")
    print(f"naive HF loop (a prefix forward per position) {hf_tps:,.1f} tok/s "
          f"({timed['naive_hf_tokens']} tokens) | scorer / naive HF {tps['scorer'] / hf_tps:.1f}x")
    print(vllm_line(workload(small), timed["tokens"]))
    print(f"peak RSS of the streaming scorer: {mem[0]['peak_rss_mb']:.0f} MB at "
          f"{mem[0]['responses']} responses, {mem[1]['peak_rss_mb']:.0f} MB at "
          f"{mem[1]['responses']}")


if __name__ == "__main__":
    main()
