"""GPU check: the project's scorer, sampler and cross-sampler at a real model shape, no download.

Builds two randomly initialised models with Qwen2.5-1.5B's shape (written from its published
config: hidden 1536, 28 layers, 12 heads, 2 KV heads, MLP 8960, vocabulary 151936, tied
embeddings), in bf16 on one GPU, and measures:

- scorer (`rlvr.tokens.scorer.score_batches`): scored response tokens/s, and model FLOP utilisation
  MFU = 2 * N_params * forward_tokens * 2 models / time / peak (N_params counts the tied
  embedding once, so the output head's FLOPs are in; attention's L^2 term is left out);
- floor: the two models' bare bodies over the same batches (what scoring cannot beat);
- sampler (`rlvr.generation.sampler.sample`): generated tokens/s at one batch;
- cross-sampler (`rlvr.cross.decoder.cross_sample`, JS rule): mixed-response tokens/s.

Random weights give near-uniform next-token distributions, unlike a trained model, and make
the scorer's top-p path take its slow dense branch on every row; so the final norm is scaled
(`--logit-std`, default 3) to give peaked, trained-like distributions: the summary reports the
mean entropy that resulted.

    benchmarks/gpu_check.sh              # real shape on the GPU, < 8 minutes on an H100/H200
    benchmarks/gpu_check.sh --dry-run    # small shape, real vocabulary, on the CPU (~1 minute)

Prints one JSON summary (also written to --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, PreTrainedModel, Qwen2Config

# Qwen2.5-1.5B's config.json values (the architecture only; weights are random)
QWEN25_15B = dict(
    hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
    intermediate_size=8960, vocab_size=151936, max_position_embeddings=32768,
    rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu",
)
# dry run: tiny body, the real vocabulary (vocabulary chunking is what needs exercising)
DRY = dict(QWEN25_15B, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, intermediate_size=128)

WORKLOADS = {  # responses to score, their lengths; sampler/cross rows and new tokens
    "real": dict(score_rows=128, prompt_len=128, response_len=896, sample_rows=64,
                 sample_prompt_len=64, sample_new=256, cross_rows=64, cross_new=128),
    "dry": dict(score_rows=6, prompt_len=12, response_len=36, sample_rows=4,
                sample_prompt_len=8, sample_new=12, cross_rows=4, cross_new=8),
}
# dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets, SXM parts)
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 70.0}
EOS_ID, PAD_ID = 2, 0


def build_model(shape: dict, seed: int, device: str, dtype: torch.dtype,
                logit_std: float) -> PreTrainedModel:
    """A random Qwen2 model of `shape`, initialised on `device`; logits scaled to ~`logit_std`."""
    config = Qwen2Config(**shape, bos_token_id=1, eos_token_id=EOS_ID, pad_token_id=PAD_ID)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # logits = norm(h) . W: std ~ sqrt(hidden) * init_std * norm weight
    scale = logit_std / (math.sqrt(shape["hidden_size"]) * config.initializer_range)
    with torch.no_grad():
        model.model.norm.weight.mul_(scale)
    return model.eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> tuple[Any, float]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def peak_memory_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def random_ids(n_rows: int, length: int, vocab: int, gen: torch.Generator) -> list[list[int]]:
    # ids >= 10 keep EOS/PAD out of prompts and teacher-forced responses
    return torch.randint(10, vocab, (n_rows, length), generator=gen).tolist()


def check_scorer(base, tuned, w, vocab, device, n_params, peak) -> dict:
    from rlvr.tokens.scorer import Response, ScoreParams, score_batches

    gen = torch.Generator().manual_seed(0)
    prompts = random_ids(w["score_rows"], w["prompt_len"], vocab, gen)
    responses_ids = random_ids(w["score_rows"], w["response_len"], vocab, gen)
    responses = [Response(f"p{i}", 0, p, r, 1)
                 for i, (p, r) in enumerate(zip(prompts, responses_ids, strict=True))]
    params = ScoreParams()

    def run_scorer(rs):
        cols = [b for b in score_batches(base, tuned, rs, params, PAD_ID)]
        return sum(len(c["position"]) for c in cols), cols

    run_scorer(responses[:1])  # warm-up: kernels, allocator
    reset_peak(device)
    (scored, cols), seconds = timed(lambda: run_scorer(responses), device)
    forward_tokens = w["score_rows"] * (w["prompt_len"] + w["response_len"])
    flops = 2 * n_params * forward_tokens * 2
    entropy = torch.cat([torch.as_tensor(c["entropy_base"]) for c in cols]).float()
    return {
        "responses": w["score_rows"], "scored_tokens": scored, "forward_tokens": forward_tokens,
        "seconds": round(seconds, 3), "scored_tokens_per_s": round(scored / seconds, 1),
        "tflops": round(flops / seconds / 1e12, 2),
        "mfu": None if peak is None else round(flops / seconds / (peak * 1e12), 4),
        "mean_entropy_base_nats": round(float(entropy.mean()), 3),
        "peak_memory_gb": peak_memory_gb(device), "score_params": dataclasses.asdict(params),
    }


@torch.no_grad()
def check_floor(base, tuned, w, vocab, device, n_params, peak) -> dict:
    """Both bodies over the scorer's batch size (batch_tokens), no output head, nothing kept."""
    from rlvr.tokens.scorer import ScoreParams

    width = w["prompt_len"] + w["response_len"]
    rows = max(1, ScoreParams().resources.batch_tokens // width)
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor(random_ids(w["score_rows"], width, vocab, gen), device=device)

    def run():
        for s in range(0, len(ids), rows):
            for model in (base, tuned):
                model.get_decoder()(input_ids=ids[s : s + rows])

    run()  # warm-up
    _, seconds = timed(run, device)
    tokens = ids.numel()
    flops = 2 * n_params * tokens * 2
    return {"forward_tokens": tokens, "seconds": round(seconds, 3),
            "tflops": round(flops / seconds / 1e12, 2),
            "mfu": None if peak is None else round(flops / seconds / (peak * 1e12), 4)}


def check_sampler(base, w, vocab, device) -> dict:
    from rlvr.generation.sampler import SamplingParams, sample

    gen = torch.Generator().manual_seed(1)
    prompts = random_ids(w["sample_rows"], w["sample_prompt_len"], vocab, gen)
    keys = [f"p{i}/0" for i in range(len(prompts))]
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=w["sample_new"], seed=0)
    sample(base, prompts[:2], keys[:2], SamplingParams(max_new_tokens=2), EOS_ID, PAD_ID)
    reset_peak(device)
    out, seconds = timed(lambda: sample(base, prompts, keys, params, EOS_ID, PAD_ID,
                                        batch_size=len(prompts)), device)
    tokens = sum(len(g.response_ids) for g in out)
    return {"rows": len(prompts), "new_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1), "peak_memory_gb": peak_memory_gb(device)}


def check_cross(base, tuned, w, vocab, device) -> dict:
    from rlvr.cross.decoder import SwitchRule, cross_sample
    from rlvr.generation.sampler import SamplingParams

    gen = torch.Generator().manual_seed(2)
    prompts = random_ids(w["cross_rows"], w["sample_prompt_len"], vocab, gen)
    keys = [f"p{i}/0" for i in range(len(prompts))]
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=w["cross_new"], seed=0)
    rule = SwitchRule("js", 0.1)
    cross_sample(base, tuned, prompts[:2], keys[:2], rule, SamplingParams(max_new_tokens=2),
                 EOS_ID, PAD_ID)
    reset_peak(device)
    out, seconds = timed(lambda: cross_sample(base, tuned, prompts, keys, rule, params, EOS_ID,
                                              PAD_ID, batch_size=len(prompts)), device)
    tokens = sum(len(g.response_ids) for g in out)
    switched = sum(sum(g.switched) for g in out)
    return {"rows": len(prompts), "new_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1), "switch_share": round(switched / tokens, 4),
            "peak_memory_gb": peak_memory_gb(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="small shape on the CPU")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--logit-std", type=float, default=3.0)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="dense bf16 peak of the GPU, for MFU (default: from its name)")
    parser.add_argument("--only", default="floor,scorer,sampler,cross")
    parser.add_argument("--out", default=None, help="also write the JSON summary here")
    args = parser.parse_args()

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not args.dry_run and device == "cpu":
        raise SystemExit("no GPU visible: run with --dry-run on the CPU")
    shape, w = (DRY, WORKLOADS["dry"]) if args.dry_run else (QWEN25_15B, WORKLOADS["real"])
    dtype = torch.bfloat16
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else None
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if gpu and k in gpu), None)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # report the scorer's fp32 math as written

    start = time.perf_counter()
    (base, tuned), build_s = timed(lambda: tuple(
        build_model(shape, seed, device, dtype, args.logit_std) for seed in (0, 1)), device)
    n_params = sum(p.numel() for p in base.parameters())
    summary: dict[str, Any] = {
        "mode": "dry-run" if args.dry_run else "real", "device": device, "gpu": gpu,
        "peak_bf16_tflops": peak, "dtype": str(dtype), "shape": shape, "workload": w,
        "n_params": n_params, "build_seconds": round(build_s, 2), "torch": torch.__version__,
        "transformers": transformers.__version__, "python": platform.python_version(),
    }
    checks = {
        "floor": lambda: check_floor(base, tuned, w, shape["vocab_size"], device, n_params, peak),
        "scorer": lambda: check_scorer(base, tuned, w, shape["vocab_size"], device, n_params,
                                       peak),
        "sampler": lambda: check_sampler(base, w, shape["vocab_size"], device),
        "cross": lambda: check_cross(base, tuned, w, shape["vocab_size"], device),
    }
    for name in args.only.split(","):
        t0 = time.perf_counter()
        try:
            summary[name] = checks[name]()
        except (ImportError, RuntimeError, AssertionError, ValueError) as err:
            # one broken stage (a missing module, a device mismatch) must not hide the others
            summary[name] = {"error": f"{type(err).__name__}: {err}"[:2000]}
        print(f"# {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    summary["total_seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
