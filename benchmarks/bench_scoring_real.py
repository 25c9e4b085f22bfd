"""Benchmark: the scorer on the real pair (SmolLM2-135M-Instruct base vs its RL sibling).

Run from the repository root after the real pipeline's sample stage (`make reproduce-real`):
`nice -n 15 .venv/bin/python benchmarks/bench_scoring_real.py [--threads 2]`. Workload: the
real run's own responses (real/data/samples, base and rl, 4 per held-out prompt: ~85 prompt
tokens through the chat template, ~27 response tokens, vocabulary 49,152, hidden 576, 30 layers).
Measured in one run, each timing the min of `--reps` interleaved repetitions:
- scorer: `rlvr.tokens.scorer.score_responses`, token-table rows included, on both generators'
  responses at once (a prompt's base and rl samples share its encoding) and one generator at
  a time (what the score stage's jobs do today);
- floor: both models' bare forwards as the scorer runs them (each distinct prompt once, output
  heads at the scored positions), nothing computed from the logits (target: scorer <= 1.25x);
- naive loop: one full forward per response, float64 softmax to numpy, a Python loop per
  position (`bench_scoring.naive`; target: scorer >= 10x), and the naive HF loop a user might
  write first (one forward of the whole prefix per position, no KV cache) on a few responses;
- vLLM `prompt_logprobs` when `.venv-vllm` exists (else a line saying it was not measured):
  top-20 (vLLM's default cap) on the timed responses, and the full vocabulary
  (`max_logprobs=-1`, minutes per response) on the first `--vllm-full`; its values against
  ours (realised-token log-probs; entropies and JS from its full distributions);
- peak RSS of the streaming scorer at each of `--sizes` (target: flat).
The scorer's columns are checked against the naive float64 reference.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
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
from rlvr.tokens.divergence import entropy, js  # noqa: E402
from rlvr.tokens.scorer import Response, ScoreParams, score_batches, score_responses  # noqa: E402

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


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def load_pair(dtype: str = "fp32"):
    """Tokenizer and both real models, weights and forwards in `dtype` (the statistics are
    float32 either way and the naive reference reads the same models' logits)."""
    tok = AutoTokenizer.from_pretrained(REAL / "models" / "base")
    models = [AutoModelForCausalLM.from_pretrained(REAL / "models" / m, dtype=DTYPES[dtype])
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


def child(mode: str, n: int, threads: int, reps: int, dtype: str) -> dict:
    torch.set_num_threads(threads)
    tok, base, tuned = load_pair(dtype)
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
    times: dict[str, list[float]] = {"scorer": [], "floor": [], "naive": [], "naive_hf": [],
                                     "split": []}
    half = len(responses) // 2  # the base-generated half, then the rl-generated one
    for rep in range(reps):
        t = time.perf_counter()
        tables = scorer(responses)
        times["scorer"].append(time.perf_counter() - t)
        t = time.perf_counter()  # one pass per generator, as the score stage's jobs run today
        scorer(responses[:half]), scorer(responses[half:])
        times["split"].append(time.perf_counter() - t)
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
import numpy as np
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt


def main():  # under a main guard: vLLM's engine process re-imports this file
    models, rows_path, out_path = sys.argv[1:4]
    n_full, dtype, max_len = int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
    req = json.load(open(rows_path))
    rows, starts = req["rows"], req["starts"]
    prompts = [TokensPrompt(prompt_token_ids=r) for r in rows]
    out = {"top20": {}, "full": {}, "realised": {}}
    for name in ("base", "rl"):
        for k, n in (("top20", len(rows)), ("full", n_full)):
            if not n:
                continue
            llm = LLM(model=models + "/" + name, dtype=dtype, enforce_eager=True,
                      max_model_len=max_len, max_logprobs=20 if k == "top20" else -1)
            params = SamplingParams(max_tokens=1, prompt_logprobs=20 if k == "top20" else -1,
                                    detokenize=False)
            llm.generate(prompts[:2], params)  # first calls allocate and pick kernels
            t = time.perf_counter()
            res = llm.generate(prompts[:n], params)
            out[k][name] = time.perf_counter() - t
            if k == "top20":  # the realised token's log-prob comes with the top 20
                out["realised"][name] = [[r.prompt_logprobs[j][ids[j]].logprob
                                          for j in range(s, len(ids))]
                                         for r, ids, s in zip(res, rows, starts)]
            else:
                full = []
                for r, ids, s in zip(res, rows, starts):
                    vocab = max(r.prompt_logprobs[s]) + 1  # every id is there
                    for j in range(s, len(ids)):
                        v = np.full(vocab, -np.inf)
                        for tok, lp in r.prompt_logprobs[j].items():
                            v[tok] = lp.logprob
                        full.append(v)
                np.save(out_path + "." + name + ".npy", np.stack(full))
            del llm
    json.dump(out, open(out_path, "w"))


if __name__ == "__main__":
    main()
"""


def vllm_rows(responses: list[Response], ours: dict[str, np.ndarray], n_full: int,
              dtype: str) -> list[str]:
    """vLLM `prompt_logprobs` on the same responses, both models, fp32: top-20 (the default
    cap; every prompt re-run per response, no prefix cache for prompt log-probs) on all of
    them and the full vocabulary (`max_logprobs=-1`) on the first `n_full`; its realised-token
    log-probs, and on the full rows its entropies and JS, against ours (`ours`: the scorer's
    columns of the same responses, in order)."""
    if not VLLM_PYTHON.exists():
        return ["vLLM prompt_logprobs: not measured (no .venv-vllm here; `make vllm-env` "
                "builds it, then rerun)"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    (tmp / "vllm_logprobs.py").write_text(VLLM_SCRIPT)
    (tmp / "rows.json").write_text(json.dumps({
        "rows": [r.prompt_ids + r.response_ids for r in responses],
        "starts": [len(r.prompt_ids) for r in responses]}))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_NO_USAGE_STATS": "1"}
    width = max(len(r.prompt_ids) + len(r.response_ids) for r in responses)
    proc = subprocess.run([str(VLLM_PYTHON), str(tmp / "vllm_logprobs.py"), str(REAL / "models"),
                           str(tmp / "rows.json"), str(tmp / "out.json"), str(n_full),
                           {"fp32": "float32", "bf16": "bfloat16"}[dtype], str(width + 8)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"vLLM failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    got = json.loads((tmp / "out.json").read_text())
    tokens = sum(len(r.response_ids) for r in responses)
    lines = [f"vLLM prompt_logprobs top-20 (truncated; both models, {dtype}): "
             f"{tokens / sum(got['top20'].values()):,.1f} tok/s"]
    diffs = {m: np.abs(np.concatenate(got["realised"][name]) - ours[f"logprob_{m}"]).max()
             for name, m in (("base", "base"), ("rl", "tuned"))}
    lines.append("vLLM vs ours, realised-token log-prob (max |diff| over "
                 f"{tokens} positions): base {diffs['base']:.1e}, rl {diffs['tuned']:.1e}")
    if n_full:
        full_tokens = sum(len(r.response_ids) for r in responses[:n_full])
        lines.append(f"vLLM prompt_logprobs full vocabulary (max_logprobs=-1; both models, "
                     f"{n_full} responses): {full_tokens / sum(got['full'].values()):,.2f} tok/s")
        la, lb = (torch.tensor(np.load(tmp / f"out.json.{m}.npy")) for m in ("base", "rl"))
        la, lb = torch.log_softmax(la, -1), torch.log_softmax(lb, -1)  # float64 already
        theirs = {"entropy_base": entropy(la), "entropy_tuned": entropy(lb), "js": js(la, lb)}
        lines.append("vLLM vs ours, full-vocabulary statistics (max |diff| over "
                     f"{full_tokens} positions): " + ", ".join(
                         f"{k} {np.abs(v.numpy() - ours[k][:full_tokens]).max():.1e}"
                         for k, v in theirs.items()))
    shutil.rmtree(tmp)
    return lines


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def columns(n: int, threads: int, dtype: str) -> dict[str, list[float]]:
    """The scorer's log-probs, entropies and JS for the first n workload responses, in
    response then position order (what vLLM is compared with)."""
    torch.set_num_threads(threads)
    tok, base, tuned = load_pair(dtype)
    got = {}
    for cols in score_batches(base, tuned, workload(n), ScoreParams(), tok.pad_token_id):
        for k in ("response", "position", "logprob_base", "logprob_tuned", "entropy_base",
                  "entropy_tuned", "js"):
            got.setdefault(k, []).append(cols[k])
    cat = {k: np.concatenate(v) for k, v in got.items()}
    order = np.lexsort((cat["position"], cat["response"]))
    return {k: cat[k][order].astype(float).tolist() for k in cat if k not in ("response",
                                                                              "position")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[48, 192, 384],
                    help="responses: the first is timed, each is a peak-RSS run")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--vllm-full", type=int, default=2,
                    help="responses scored by vLLM over the full vocabulary (minutes each)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                    help="both models' weights and forwards, ours and vLLM's")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, n, threads, reps, dtype = args.child
        out = (columns(int(n), int(threads), dtype) if mode == "columns"
               else child(mode, int(n), int(threads), int(reps), dtype))
        print(json.dumps(out))
        return
    small, th = args.sizes[0], str(args.threads)
    timed = run_child("timing", str(small), th, str(args.reps), args.dtype)
    mem = [run_child("memory", str(n), th, "1", args.dtype) for n in args.sizes]
    tps = {k: timed["tokens"] / timed[k] for k in ("scorer", "floor")}
    naive_tps = timed["naive_tokens"] / timed["naive"]
    hf_tps = timed["naive_hf_tokens"] / timed["naive_hf"]
    print(f"workload: {timed['responses']} real responses (base and rl samples), "
          f"{timed['tokens']} scored tokens, prompts {timed['prompt_tokens']:.0f} tokens, "
          f"vocabulary 49152, {args.dtype} weights and forwards, {th} torch thread(s), min of "
          f"{args.reps} interleaved runs")
    print("agreement with the float64 naive reference (max |diff|): "
          + ", ".join(f"{k} {v:.1e}" for k, v in timed["max_abs_diff"].items()))
    print(f"scorer {tps['scorer']:,.1f} tok/s | floor {tps['floor']:,.1f} tok/s | scorer time / "
          f"floor time {timed['scorer'] / timed['floor']:.2f}x (target <= 1.25x)")
    print(f"both generators' responses in one pass (each prompt encoded once per model) "
          f"{timed['scorer']:.1f} s vs one pass per generator {timed['split']:.1f} s: "
          f"{1 - timed['scorer'] / timed['split']:.0%} saved")
    print(f"naive loop {naive_tps:,.1f} tok/s ({timed['naive_tokens']} tokens) | scorer / naive "
          f"{tps['scorer'] / naive_tps:.1f}x (target >= 10x)")
    print(f"naive HF loop (a prefix forward per position) {hf_tps:,.1f} tok/s "
          f"({timed['naive_hf_tokens']} tokens) | scorer / naive HF {tps['scorer'] / hf_tps:.1f}x")
    ours = {k: np.array(v) for k, v in
            run_child("columns", str(small), th, "1", args.dtype).items()}
    for line in vllm_rows(workload(small), ours, args.vllm_full, args.dtype):
        print(line)
    print("peak RSS of the streaming scorer: " + ", ".join(
        f"{m['peak_rss_mb']:.0f} MB at {m['responses']} responses" for m in mem))


if __name__ == "__main__":
    main()
