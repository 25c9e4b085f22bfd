"""Speed of the lock-step cross-sampler against single-model sampling and a naive mixed decoder.

    nice -n 15 python benchmarks/bench_cross.py [--rows 16] [--new-tokens 256] [--threads 1]

Models: two randomly initialised decoders of the toy family's shape (params.yaml `model`
defaults), so they produce every requested token: EOS is ignored (eos_id = -1). Measures, in one
run, wall time per generated token of
  (a) plain KV-cached sampling (`rlvr.generation.sampler.sample`) from each model alone,
  lock-step cross-sampling (`rlvr.cross.decoder.cross_sample`, js rule, a mid threshold), and
  (b) a naive mixed decoder that re-encodes the whole prefix with both models at every step,
  and the lock-step decoder with the other switch distributions: the extrapolation blend
  (alpha 0.1) and the companion's top-50 mixing, at the same rule.
Targets: lock-step <= 1.3 x (a_primary + a_intervention), and >= 5 x faster than (b).
Also reports how many of (b)'s tokens equal the lock-step decoder's (same streams, same rule).
"""

from __future__ import annotations

import argparse
import time

import torch

from rlvr.cross.decoder import Mixing, SwitchRule, cross_sample, step_signals, switch_mask
from rlvr.generation.sampler import SamplingParams, left_pad, pick_tokens, sample, sampling_uniforms
from rlvr.testbed.model import ModelShape, build_model, build_tokenizer
from rlvr.testbed.prompts import encode_prompts, task_prompts

NO_EOS = -1  # no token id equals it, so every row decodes the full budget


@torch.no_grad()
def naive_cross_sample(primary, intervention, prompts, keys, rule, params, pad_id):
    """Re-encode prompt + mixed prefix with both models at every step (no KV cache)."""
    u = sampling_uniforms(params.seed, keys, params.max_new_tokens)
    out = [[] for _ in prompts]
    for t in range(params.max_new_tokens):
        ids, mask, pos = left_pad([list(p) + o for p, o in zip(prompts, out, strict=True)], pad_id)
        lp = primary(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].float()
        li = intervention(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
        li = li.float()
        sig = step_signals(lp, li)
        switch = switch_mask(rule, sig, torch.zeros(len(prompts), dtype=torch.float64))
        tok = pick_tokens(torch.where(switch.unsqueeze(-1), li, lp), u[:, t], params.temperature,
                          params.top_p)
        for row, token in zip(out, tok.tolist(), strict=True):
            row.append(token)
    return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="best of N for the fast decoders")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tok = build_tokenizer()
    shape = ModelShape(max_length=64 + args.new_tokens)
    primary = build_model(shape, tok, seed=0).eval()
    intervention = build_model(shape, tok, seed=1).eval()
    prompts = encode_prompts(task_prompts(args.rows, 0, 4, 7), tok)
    keys = [f"bench/{i}" for i in range(args.rows)]
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens, seed=0)
    pad = tok.pad_token_id
    n_tokens = args.rows * args.new_tokens

    probe = cross_sample(primary, intervention, prompts[:4], keys[:4], SwitchRule("js", -1.0),
                         SamplingParams(max_new_tokens=16), NO_EOS, pad)
    mid = sorted(v for g in probe for v in g.js)[len(probe) * 8]  # median step JS
    rule = SwitchRule("js", mid)

    def best(fn):
        runs = [timed(fn) for _ in range(args.repeats)]
        return runs[0][0], min(s for _, s in runs)

    _, t_p = best(lambda: sample(primary, prompts, keys, params, NO_EOS, pad))
    _, t_i = best(lambda: sample(intervention, prompts, keys, params, NO_EOS, pad))
    gens, t_x = best(lambda: cross_sample(primary, intervention, prompts, keys, rule, params,
                                          NO_EOS, pad))
    mixed = {name: best(lambda m=m: cross_sample(primary, intervention, prompts, keys, rule,
                                                  params, NO_EOS, pad, mixing=m))[1]
             for name, m in (("extrapolation a=0.1", Mixing(-0.1)),
                             ("top-50 mixing", Mixing(top_k=50)))}
    naive, t_n = timed(lambda: naive_cross_sample(primary, intervention, prompts, keys, rule,
                                                  params, pad))
    assert all(len(g.response_ids) == args.new_tokens for g in gens), "EOS must be ignored"
    same = sum(a == b for g, row in zip(gens, naive, strict=True)
               for a, b in zip(g.response_ids, row, strict=True))
    share = sum(sum(g.switched) for g in gens) / n_tokens

    def per_token(seconds: float) -> str:
        return f"{1e3 * seconds / n_tokens:8.4f} ms/token  ({seconds:7.2f} s)"

    print(f"rows={args.rows} new_tokens={args.new_tokens} threads={args.threads} "
          f"model={shape.hidden_size}d x {shape.num_layers}L vocab={len(tok)} "
          f"js threshold={mid:.5f} switched={share:.1%}")
    print(f"(a) primary alone        {per_token(t_p)}")
    print(f"(a) intervention alone   {per_token(t_i)}")
    print(f"    lock-step cross      {per_token(t_x)}")
    for name, seconds in mixed.items():
        print(f"    {name:<20} {per_token(seconds)}  ({seconds / t_x:.2f}x replacement)")
    print(f"(b) naive re-encoding    {per_token(t_n)}")
    ratio, speedup = t_x / (t_p + t_i), t_n / t_x
    print(f"lock-step / (a_p + a_i) = {ratio:.2f}  (target <= 1.3: "
          f"{'PASS' if ratio <= 1.3 else 'FAIL'})")
    print(f"naive / lock-step       = {speedup:.1f}x (target >= 5: "
          f"{'PASS' if speedup >= 5 else 'FAIL'})")
    print(f"naive tokens equal to lock-step: {same}/{n_tokens}")


if __name__ == "__main__":
    main()
