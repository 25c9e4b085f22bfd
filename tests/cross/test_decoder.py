"""The lock-step cross-sampler: exact endpoints, teacher-forced signals, random rates, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlvr.cross.decoder import SIGNALS, SwitchRule, cross_sample, switch_mask
from rlvr.cross.mixing import topk_kl_sym
from rlvr.generation.sampler import SamplingParams, pick_tokens, sample, sampling_uniforms
from rlvr.testbed.digits import make_split
from rlvr.tokens.divergence import entropy, js, kl

PARAMS = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=24, seed=11)


def _prompts(tokenizer, n):
    _, eval_problems = make_split(50, n, seed=3, min_digits=2, max_digits=6)
    return [tokenizer(p.prompt)["input_ids"] for p in eval_problems]


def _ids(tokenizer):
    return tokenizer.eos_token_id, tokenizer.pad_token_id


def test_switch_mask_table():
    step_js = torch.tensor([0.0, 0.2, 0.5])
    ent = torch.tensor([3.0, 0.1, 1.0])
    delta = torch.tensor([0.0, 2.0, math.inf])  # inf: the intervention rules out the top token
    u = torch.tensor([0.0, 0.5, 0.99])
    signals = {"js": step_js, "entropy_primary": ent, "entropy_intervention": -ent,
               "delta_top": delta}
    cases = [
        (SwitchRule("js", 0.2), [False, False, True]),  # strictly greater than epsilon
        (SwitchRule("js", math.log(2)), [False, False, False]),  # JS <= ln 2: never
        (SwitchRule("js", -1.0), [True, True, True]),  # JS >= 0: always
        (SwitchRule("entropy_primary", 0.5), [True, False, True]),
        (SwitchRule("entropy_intervention", -0.5), [False, True, False]),  # its own signal
        (SwitchRule("delta", 1.0), [False, True, True]),
        (SwitchRule("random", 0.5), [True, False, False]),  # u < rate
        (SwitchRule("random", 0.0), [False, False, False]),
        (SwitchRule("random", 1.0), [True, True, True]),
    ]
    for rule, expected in cases:
        assert switch_mask(rule, signals, u).tolist() == expected, rule
    # per-row rates replace the rule's rate: row 0 never (rate 0), rows 1, 2 always
    rates = torch.tensor([0.0, 1.0, 1.0])
    assert switch_mask(SwitchRule("random", 0.5), signals, u, rates).tolist() == [False, True,
                                                                                  True]


def test_rule_validation():
    with pytest.raises(ValueError, match="unknown switch rule"):
        SwitchRule("kl", 0.1)  # which KL is ambiguous: kl_pi or kl_ip
    with pytest.raises(ValueError, match="rate in"):
        SwitchRule("random", 1.5)


NEVER = [SwitchRule("js", 1.0), SwitchRule("entropy_primary", 1e9),
         SwitchRule("entropy_intervention", 1e9), SwitchRule("delta", 1e9),
         SwitchRule("random", 0.0)]
ALWAYS = [SwitchRule("js", -1.0), SwitchRule("entropy_primary", -1.0),
          SwitchRule("entropy_intervention", -1.0), SwitchRule("delta", -1.0),
          SwitchRule("random", 1.0)]


@pytest.mark.parametrize("never,always", list(zip(NEVER, ALWAYS, strict=True)),
                         ids=[r.name for r in NEVER])
def test_extreme_thresholds_reproduce_each_model(tiny_pair, tokenizer, never, always):
    prim, inter = tiny_pair
    prompts = _prompts(tokenizer, 6)
    keys = [f"p{i}/0" for i in range(6)]
    eos, pad = _ids(tokenizer)
    for rule, model, n_switched in ((never, prim, 0), (always, inter, None)):
        mixed = cross_sample(prim, inter, prompts, keys, rule, PARAMS, eos, pad, batch_size=4)
        plain = sample(model, prompts, keys, PARAMS, eos, pad, batch_size=4)
        for m, p in zip(mixed, plain, strict=True):
            assert m.response_ids == p.response_ids
            logps = m.logprob_primary if model is prim else m.logprob_intervention
            np.testing.assert_allclose(logps, p.logprobs, atol=1e-5)
            assert sum(m.switched) == (len(m.switched) if n_switched is None else 0)
    if never.name == "js":  # the two models really differ, so the test can tell them apart
        assert any(a.response_ids != b.response_ids for a, b in zip(
            sample(prim, prompts, keys, PARAMS, eos, pad),
            sample(inter, prompts, keys, PARAMS, eos, pad), strict=True))


def _teacher_forced(model, prompt, response):
    ids = torch.tensor([list(prompt) + list(response)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    # row t predicts response token t
    return torch.log_softmax(logits[len(prompt) - 1 : len(prompt) - 1 + len(response)], -1)


def _reference_signals(lp_p, lp_i, uniforms, k=50):
    """Every rule's signal from teacher-forced log-probs (float32), the decoder's sign applied;
    the candidate is the primary's draw with the step's uniform, as the decoder draws it."""
    top = lp_p.argmax(-1, keepdim=True)
    cand = pick_tokens(lp_p, uniforms, PARAMS.temperature, PARAMS.top_p).unsqueeze(-1)
    gap_top = (lp_i.gather(-1, top) - lp_p.gather(-1, top))[:, 0]
    gap_sampled = (lp_i.gather(-1, cand) - lp_p.gather(-1, cand))[:, 0]
    kl_pi, kl_ip = kl(lp_p, lp_i), kl(lp_i, lp_p)
    return {"js": js(lp_p, lp_i), "entropy_primary": entropy(lp_p),
            "entropy_intervention": entropy(lp_i), "delta": gap_top.abs(),
            "gap_top_pos": gap_top, "gap_top_neg": -gap_top, "gap_sampled_pos": gap_sampled,
            "gap_sampled_neg": -gap_sampled, "kl_pi": kl_pi, "kl_ip": kl_ip,
            "kl_sym": (kl_pi + kl_ip) / 2, "kl_sym_topk": topk_kl_sym(lp_p, lp_i, k),
            "early": -torch.arange(len(lp_p), dtype=torch.float32)}


RECORDED = {"js": "js", "entropy_primary": "entropy_primary", "delta": "delta_top",
            "entropy_intervention": "entropy_intervention", "gap_top_pos": "gap_top",
            "gap_sampled_pos": "gap_sampled", "kl_pi": "kl_primary_intervention",
            "kl_ip": "kl_intervention_primary",
            "kl_sym": "kl_sym", "kl_sym_topk": "kl_sym_topk"}


@pytest.mark.parametrize("rule_name", ["js", "entropy_primary", "entropy_intervention",
                                       "delta", "gap_sampled_neg", "gap_sampled_pos",
                                       "gap_top_neg", "kl_pi", "kl_ip", "kl_sym", "kl_sym_topk"])
def test_recorded_signals_equal_teacher_forced(tiny_pair, tokenizer, rule_name):
    prim, inter = tiny_pair
    prompts = _prompts(tokenizer, 8)
    keys = [f"q{i}" for i in range(8)]
    eos, pad = _ids(tokenizer)
    # a mid threshold (the median of a first run's signal), so responses really mix both models
    probe = cross_sample(prim, inter, prompts, keys, SwitchRule("js", -1.0), PARAMS, eos, pad)
    signal, sign = SIGNALS[rule_name]
    mid = float(np.median(sign * np.concatenate([getattr(g, signal) for g in probe])))
    rule = SwitchRule(rule_name, mid)
    gens = cross_sample(prim, inter, prompts, keys, rule, PARAMS, eos, pad, batch_size=3)
    share = np.mean(np.concatenate([g.switched for g in gens]))
    assert 0.1 < share < 0.9, share
    uniforms = sampling_uniforms(PARAMS.seed, keys, PARAMS.max_new_tokens)
    for g, u in zip(gens, uniforms, strict=True):
        lp_p = _teacher_forced(prim, g.prompt_ids, g.response_ids)
        lp_i = _teacher_forced(inter, g.prompt_ids, g.response_ids)
        ref = _reference_signals(lp_p, lp_i, u[: len(g.response_ids)])
        for name, column in RECORDED.items():
            atol = 2e-6 if name == "js" else 1e-5
            np.testing.assert_allclose(getattr(g, column), ref[name].numpy(), atol=atol,
                                       err_msg=name)
        resp = torch.tensor(g.response_ids).unsqueeze(-1)
        np.testing.assert_allclose(g.logprob_primary, lp_p.gather(-1, resp)[:, 0], atol=1e-5)
        np.testing.assert_allclose(g.logprob_intervention, lp_i.gather(-1, resp)[:, 0], atol=1e-5)
        # the recorded decisions are the rule applied to the teacher-forced signals
        clear = (ref[rule_name] - mid).abs() > 1e-5  # skip ties that float noise could flip
        assert np.array_equal(np.array(g.switched)[clear], (ref[rule_name] > mid)[clear].numpy())
        assert g.mix_tv == [None] * len(g.switched)  # exact mixing records no shortcut


def test_early_rule_switches_the_first_positions(tiny_pair, tokenizer):
    prim, inter = tiny_pair
    prompts = _prompts(tokenizer, 6)
    keys = [f"e{i}" for i in range(6)]
    eos, pad = _ids(tokenizer)
    gens = cross_sample(prim, inter, prompts, keys, SwitchRule("early", -3.5), PARAMS, eos, pad)
    for g in gens:  # threshold -3.5: positions 0..3 (-t > -3.5)
        assert g.switched == [t < 4 for t in range(len(g.switched))]


def test_random_rule_rate_within_sampling_error(tiny_pair, tokenizer):
    prim, inter = tiny_pair
    prompts = _prompts(tokenizer, 48)
    keys = [f"r{i}" for i in range(48)]
    eos, pad = _ids(tokenizer)
    for rate in (0.1, 0.35):
        gens = cross_sample(prim, inter, prompts, keys, SwitchRule("random", rate), PARAMS, eos,
                            pad)
        n = sum(len(g.switched) for g in gens)
        k = sum(sum(g.switched) for g in gens)
        assert n > 600
        # pooled share: Wald's identity makes k / n unbiased for the rate; 4 binomial sigmas
        assert abs(k - rate * n) <= 4 * math.sqrt(n * rate * (1 - rate)), (rate, k, n)


def test_per_row_random_rates(tiny_pair, tokenizer):
    # rows with rate 0 reproduce the primary, rows with rate 1 the intervention model, and a
    # rate-0.3 row switches about 30% of its tokens
    prim, inter = tiny_pair
    prompts = _prompts(tokenizer, 30)
    keys = [f"t{i}" for i in range(30)]
    eos, pad = _ids(tokenizer)
    rates = [0.0, 1.0, 0.3] * 10
    gens = cross_sample(prim, inter, prompts, keys, SwitchRule("random", 0.5), PARAMS, eos, pad,
                        batch_size=7, rates=rates)
    assert all(sum(g.switched) == 0 for g in gens[0::3])
    assert all(all(g.switched) for g in gens[1::3])
    mid = [s for g in gens[2::3] for s in g.switched]
    assert abs(np.mean(mid) - 0.3) <= 4 * math.sqrt(0.3 * 0.7 / len(mid)), np.mean(mid)
    plain = sample(prim, prompts[0::3], keys[0::3], PARAMS, eos, pad)
    assert [g.response_ids for g in gens[0::3]] == [p.response_ids for p in plain]


def test_random_switches_do_not_disturb_token_uniforms(tiny_pair, tokenizer):
    # with an identical pair every switch is invisible: tokens equal plain sampling at any rate
    prim, _ = tiny_pair
    prompts = _prompts(tokenizer, 6)
    keys = [f"s{i}" for i in range(6)]
    eos, pad = _ids(tokenizer)
    plain = sample(prim, prompts, keys, PARAMS, eos, pad)
    mixed = cross_sample(prim, prim, prompts, keys, SwitchRule("random", 0.5), PARAMS, eos, pad)
    assert [g.response_ids for g in mixed] == [p.response_ids for p in plain]
    assert 0 < sum(sum(g.switched) for g in mixed) < sum(len(g.switched) for g in mixed)


def test_batch_with_different_lengths_equals_each_alone(tiny_pair, tokenizer):
    prim, inter = tiny_pair
    prompts = _prompts(tokenizer, 16)
    keys = [f"b{i}" for i in range(16)]
    eos, pad = _ids(tokenizer)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=40, seed=1)
    for rule in (SwitchRule("js", 0.0015), SwitchRule("random", 0.5)):
        batched = cross_sample(prim, inter, prompts, keys, rule, params, eos, pad, batch_size=16)
        lengths = {len(g.response_ids) for g in batched}
        assert len(lengths) >= 3 and any(g.finish_reason == "eos" for g in batched), lengths
        # every row that stopped early, and two that ran to the limit
        eos_rows = [i for i, g in enumerate(batched) if g.finish_reason == "eos"]
        long_rows = [i for i, g in enumerate(batched) if g.finish_reason == "length"][:2]
        for i in eos_rows + long_rows:
            g = batched[i]
            alone = cross_sample(prim, inter, prompts[i : i + 1], keys[i : i + 1], rule, params,
                                 eos, pad)[0]
            assert alone.response_ids == g.response_ids
            assert alone.switched == g.switched
            np.testing.assert_allclose(alone.js, g.js, atol=1e-6)
