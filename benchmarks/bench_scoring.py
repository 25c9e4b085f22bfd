"""Benchmark: the project's chunked scorer vs a naive reference and vs the bare forward floor.

Run: `nice -n 15 .venv/bin/python benchmarks/bench_scoring.py` (add `--sizes 256 1024` etc.).
Workload: a fixed synthetic set of prompt + response token sequences (prompts of 7-10 tokens,
8 responses of 8-20 tokens per prompt, as RLVR samples them), scored by two random models of
the family's default body shape (4 layers, hidden 64, 2 heads) with an untied output head scaled
to logit std `--logit-std`.
- Default: the terse testbed's vocabulary (113 ids), logit std 12: mean entropy ~0.4 nats,
  about that of the trained default pair (0.37 base, 0.22 rl), so nuclei are as narrow as in
  the real run.
- Stress case: `--vocab 32768 --logit-std 4`: entropy ~4 nats, the top-0.7 nucleus wider than
  the top 5 at ~85% of positions, and O(V) statistics that cost more than a hidden-64 head.
Prints, per dataset size (each in a fresh subprocess so peak RSS is its own):
- tokens/s of the project scorer (`rlvr.tokens.scorer.score_responses`, token-table rows included),
- tokens/s of the naive reference (one sequence at a time, full softmax to numpy, a Python loop
  per token; timed on the first `--naive` responses) and the ratio (target >= 10x),
- the floor: both models' bare forward passes as the scorer runs them (each distinct prompt
  once, output heads at the scored positions), nothing computed from the logits, and scorer
  time / floor time (target <= 1.5x); also plain full-sequence forwards (no prompt sharing),
- peak RSS (target: flat in the number of responses),
and checks that the scorer and the naive reference agree on every statistic.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from rlvr.generation.sampler import left_pad
from rlvr.testbed.digits import label_roles
from rlvr.testbed.model import ModelShape, build_tokenizer
from rlvr.tokens.scorer import (
    Response,
    ScoreParams,
    ScoreResources,
    _batch,
    _pack,
    _positions,
    score_responses,
)

LN2 = float(np.log(2))
TOY_VOCAB = len(build_tokenizer())  # the terse testbed's vocabulary


GROUP = 8  # samples per prompt, as the default run's `sample.n_per_prompt`


def workload(n: int, vocab: int, seed: int = 0) -> list[Response]:
    """n responses, GROUP per prompt: prompts of 6-9 tokens after BOS, responses of 8-20 tokens
    ending in EOS."""
    rng = np.random.default_rng(seed)
    prompts = [[1] + rng.integers(4, vocab, rng.integers(6, 10)).tolist()
               for _ in range(-(-n // GROUP))]
    return [Response(f"p{i // GROUP}", i % GROUP, prompts[i // GROUP],
                     rng.integers(4, vocab, rng.integers(7, 20)).tolist() + [2], 1)
            for i in range(n)]


def pair(vocab: int, logit_std: float):
    """Tokenizer and two random (base, tuned) models of the family's body shape, over the toy
    task's tokenizer (vocab 0) or a synthetic word-level vocabulary of `vocab` ids, with an
    untied output head scaled so that logits have standard deviation `logit_std`: how peaked
    the next-token distributions are (untrained heads give near-uniform ones)."""
    if vocab == 0:
        tok = build_tokenizer()
    else:
        words = ["<pad>", "<bos>", "<eos>", "<unk>"] + [f"w{i}" for i in range(4, vocab)]
        tok = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)},
                                                        "<unk>")),
            bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    shape = ModelShape()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=shape.hidden_size,
                      num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
                      num_key_value_heads=shape.num_heads,
                      intermediate_size=shape.intermediate_size,
                      max_position_embeddings=shape.max_length, tie_word_embeddings=False,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg).eval()
        with torch.no_grad():  # the final norm makes hidden states of norm ~sqrt(hidden)
            model.lm_head.weight.normal_(0, logit_std / math.sqrt(cfg.hidden_size))
        out.append(model)
    return tok, *out


def naive(base, tuned, responses, top_p: float) -> list[dict]:
    """One sequence at a time, float64 numpy softmax, a Python loop per token."""
    rows = []
    for r in responses:
        ids = torch.tensor([r.prompt_ids + r.response_ids])
        with torch.no_grad():
            la = torch.log_softmax(base(input_ids=ids).logits[0].double(), -1).numpy()
            lb = torch.log_softmax(tuned(input_ids=ids).logits[0].double(), -1).numpy()
        start = len(r.prompt_ids) - 1
        for j, tok in enumerate(r.response_ids):
            a, b = la[start + j], lb[start + j]
            p, q = np.exp(a), np.exp(b)
            m = (p + q) / 2
            ids = np.arange(len(a))
            # the scorer's tie rule: logit descending, then id ascending
            oa, ob = np.lexsort((ids, -a)), np.lexsort((ids, -b))
            tp = []
            for lp, order in ((a, oa), (b, ob)):
                probs = np.exp(lp)
                cum = np.cumsum(probs[order])
                keep = np.zeros_like(probs)
                kept = order[(cum - probs[order]) < top_p]
                keep[kept] = probs[kept]
                tp.append(keep / keep.sum())
            mt = (tp[0] + tp[1]) / 2
            with np.errstate(divide="ignore", invalid="ignore"):
                js_tp = 0.5 * np.nansum(np.where(tp[0] > 0, tp[0] * np.log(tp[0] / mt), 0)) + \
                    0.5 * np.nansum(np.where(tp[1] > 0, tp[1] * np.log(tp[1] / mt), 0))
            rows.append({
                "logprob_base": a[tok], "logprob_tuned": b[tok],
                "entropy_base": -(p * a).sum(), "entropy_tuned": -(q * b).sum(),
                "js": 0.5 * (p * (a - np.log(m))).sum() + 0.5 * (q * (b - np.log(m))).sum(),
                "kl_base_tuned": (p * (a - b)).sum(), "kl_tuned_base": (q * (b - a)).sum(),
                "rank_base": 1 + int(np.flatnonzero(oa == tok)[0]),
                "rank_tuned": 1 + int(np.flatnonzero(ob == tok)[0]),
                "top1_base": oa[0], "top1_tuned": ob[0],
                "rank_in_base_of_top1_tuned": 1 + int(np.flatnonzero(oa == ob[0])[0]),
                "rank_in_tuned_of_top1_base": 1 + int(np.flatnonzero(ob == oa[0])[0]),
                "prob_base_of_top1_tuned": p[ob[0]], "js_top_p": js_tp,
                **{f"topk_overlap_{k}": len(set(oa[:k]) & set(ob[:k])) / k for k in range(1, 6)},
            })
    return rows


@torch.no_grad()
def floor(base, tuned, responses, params: ScoreParams, pad_id: int) -> None:
    """Both models' bare forwards as the scorer runs them (each distinct prompt once, then the
    responses after it; output heads at every scored position, in the scorer's blocks), with
    nothing computed from the logits."""
    res = params.resources
    wa, wb = base.get_output_embeddings().weight, tuned.get_output_embeddings().weight
    block = res.rows_per_block(wa.shape[0], wa.device)
    for rows in _pack(responses, res.tokens_per_batch((base, tuned))):
        for ha, hb, _, _ in _positions(base, tuned, _batch(responses, rows, pad_id, base.device),
                                       res.time_chunk):
            for part in torch.arange(len(ha)).split(block):
                F.linear(ha[part], wa), F.linear(hb[part], wb)


@torch.no_grad()
def plain_forwards(base, tuned, responses, params: ScoreParams, pad_id: int) -> None:
    """Plain full forwards of both models on prompt + response, same batches: what scoring
    costs at least without sharing prompts."""
    for rows in _pack(responses, params.resources.tokens_per_batch((base, tuned))):
        ids, mask, pos = left_pad([responses[i].prompt_ids + responses[i].response_ids
                                   for i in rows], pad_id)
        base(input_ids=ids, attention_mask=mask, position_ids=pos)
        tuned(input_ids=ids, attention_mask=mask, position_ids=pos)


def child(mode: str, n: int, n_naive: int, threads: int, vocab: int, logit_std: float,
          reps: int = 5) -> dict:
    """`timing`: scorer, naive and both floors interleaved `reps` times on one workload (min
    time of each, so load from other processes hurts all alike); `memory`: the scorer streaming
    n responses, keeping nothing."""
    torch.set_num_threads(threads)
    tok, base, tuned = pair(vocab, logit_std)
    responses = workload(n, vocab or TOY_VOCAB)
    # wide vocabularies: smaller batches, so the floor's full (B, L, V) logits stay ~256 MB
    params = ScoreParams(resources=ScoreResources(batch_tokens=16384 if vocab == 0 else 2048))
    out = {"mode": mode, "responses": n, "tokens": sum(len(r.response_ids) for r in responses)}

    def scorer(rs):
        return list(score_responses(base, tuned, tok, rs, "base__rl", "tuned", params,
                                    label_roles))

    warm = workload(32, vocab or TOY_VOCAB, seed=1)  # first calls allocate and pick kernels
    scorer(warm)
    floor(base, tuned, warm, params, tok.pad_token_id)
    if mode == "memory":
        for _ in score_responses(base, tuned, tok, responses, "base__rl", "tuned", params,
                                 label_roles):
            pass
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    sub = responses[:n_naive]
    times = {"scorer": [], "naive": [], "floor": [], "plain": []}
    for _ in range(reps):
        t = time.perf_counter()
        tables = scorer(responses)
        times["scorer"].append(time.perf_counter() - t)
        t = time.perf_counter()
        floor(base, tuned, responses, params, tok.pad_token_id)
        times["floor"].append(time.perf_counter() - t)
        t = time.perf_counter()
        plain_forwards(base, tuned, responses, params, tok.pad_token_id)
        times["plain"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ref = naive(base, tuned, sub, params.js_top_p)
        times["naive"].append(time.perf_counter() - t)
    out.update({k: min(v) for k, v in times.items()}, naive_tokens=len(ref))
    import pyarrow as pa

    df = pa.concat_tables(tables).to_pandas()
    out["mean_entropy"] = float(df.entropy_base.mean())
    df = df[df.prompt_id.isin({r.prompt_id for r in sub})]
    df = df.assign(i=df.prompt_id.str[1:].astype(int)).sort_values(["i", "sample_id", "position"])
    out["max_abs_diff"] = {
        key: float(np.max(np.abs(df[key].to_numpy(np.float64) -
                                 np.array([r[key] for r in ref], np.float64))))
        for key in ref[0]}
    return out


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[512, 2048])
    ap.add_argument("--naive", type=int, default=48, help="responses timed with the reference")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads "
                    "(default: all cores)")
    ap.add_argument("--vocab", type=int, default=0, help="0: the terse testbed's vocabulary")
    ap.add_argument("--logit-std", type=float, default=12.0, help="how peaked distributions are")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, n, n_naive, threads, vocab, std = args.child
        print(json.dumps(child(mode, int(n), int(n_naive), int(threads), int(vocab), float(std))))
        return
    small, large = args.sizes
    th, v, std = str(args.threads), str(args.vocab), str(args.logit_std)
    timed = run_child("timing", str(small), str(args.naive), th, v, std)
    mem = [run_child("memory", str(n), "0", th, v, std) for n in (small, large)]
    scorer_tps = timed["tokens"] / timed["scorer"]
    naive_tps = timed["naive_tokens"] / timed["naive"]
    floor_tps = timed["tokens"] / timed["floor"]
    plain_tps = timed["tokens"] / timed["plain"]
    diffs = timed["max_abs_diff"]
    print(f"workload: {small} responses, {timed['tokens']} scored tokens, vocabulary "
          f"{args.vocab or TOY_VOCAB} (logit std {args.logit_std}: mean entropy "
          f"{timed['mean_entropy']:.2f} nats), {th} torch thread(s), {GROUP} samples per "
          f"prompt, min of 5 interleaved runs")
    print("agreement with the float64 naive reference (max |diff| per column): "
          + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    print(f"scorer {scorer_tps:,.0f} tok/s | naive {naive_tps:,.0f} tok/s "
          f"({timed['naive_tokens']} tokens) | ratio {scorer_tps / naive_tps:.1f}x (target >= 10x)")
    print(f"floor (both models' bare forwards as the scorer runs them: each prompt once, heads "
          f"at scored positions) {floor_tps:,.0f} tok/s | scorer time / floor time "
          f"{timed['scorer'] / timed['floor']:.2f}x (target <= 1.5x)")
    print(f"plain full-sequence forwards of both models (no prompt sharing) {plain_tps:,.0f} "
          f"tok/s = {plain_tps / naive_tps:.1f}x naive | scorer time / plain time "
          f"{timed['scorer'] / timed['plain']:.2f}x")
    print(f"peak RSS of the streaming scorer: {mem[0]['peak_rss_mb']:.0f} MB at {small} "
          f"responses, {mem[1]['peak_rss_mb']:.0f} MB at {large}")


if __name__ == "__main__":
    main()
