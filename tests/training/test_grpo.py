"""GRPO/DAPO: advantages, dynamic sampling and the loss against numpy; the hook; a short RL run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlvr.testbed.digits import CorpusStyle, grade, make_corpus, make_split
from rlvr.testbed.model import ModelShape, build_model
from rlvr.testbed.prompts import records_of
from rlvr.training.grpo import (
    EPS,
    GRPOParams,
    TokenContext,
    group_advantages,
    grpo_loss,
    informative_groups,
    k3_kl,
    list_checkpoints,
    summarize_updates,
    train_grpo,
    update_stats,
)
from rlvr.training.lm import LMParams, encode_examples, train_lm

torch.set_num_threads(1)  # tiny models: a second thread only spin-waits on a shared machine


def np_advantages(rewards: np.ndarray) -> np.ndarray:
    """Independent reference: population std (ddof=0), per group, with EPS."""
    out = np.empty_like(rewards)
    for g, row in enumerate(rewards):
        out[g] = (row - row.mean()) / (np.sqrt(((row - row.mean()) ** 2).mean()) + EPS)
    return out


def np_loss(logp, old, adv, mask, lo, hi, weights=None, ref=None, kl_coef=0.0) -> float:
    """Per-token loops, written from the formula, not from the torch code."""
    total, count = 0.0, 0.0
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if mask[b, t] == 0:
                continue
            a = adv[b] * (1.0 if weights is None else weights[b, t])
            r = np.exp(logp[b, t] - old[b, t])
            value = -min(r * a, min(max(r, 1 - lo), 1 + hi) * a)
            if ref is not None and kl_coef:
                value += kl_coef * (np.exp(ref[b, t] - logp[b, t]) - (ref[b, t] - logp[b, t]) - 1)
            total += value
            count += 1
    return total / count


def test_group_advantages_match_numpy_with_population_std():
    rng = np.random.default_rng(0)
    rewards = rng.integers(0, 2, size=(12, 8)).astype(np.float32)
    rewards[3] = 1.0  # an all-equal group: advantages exactly 0, not nan
    rewards[5] = 0.0
    rewards[7] = rng.normal(size=8)  # continuous rewards too
    got = group_advantages(torch.tensor(rewards)).numpy()
    np.testing.assert_allclose(got, np_advantages(rewards), rtol=1e-5, atol=1e-6)
    assert np.all(got[3] == 0) and np.all(got[5] == 0)
    # population std: a {1, 0} pair has std 0.5, so advantages are ±0.5/(0.5 + EPS) ≈ ±1
    # (the sample std, 0.707, would give ±0.707)
    pair = group_advantages(torch.tensor([[1.0, 0.0]])).numpy()
    np.testing.assert_allclose(pair, [[0.5 / (0.5 + EPS), -0.5 / (0.5 + EPS)]], rtol=1e-6)


def test_dynamic_sampling_drops_exactly_the_zero_variance_groups():
    rng = np.random.default_rng(1)
    rewards = rng.integers(0, 2, size=(40, 4)).astype(np.float32)
    rewards[0], rewards[1] = 0.0, 1.0
    expected = rewards.std(axis=1) > 0
    got = informative_groups(torch.tensor(rewards)).numpy()
    np.testing.assert_array_equal(got, expected)
    assert (~expected).sum() >= 2  # the planted all-equal groups are among the dropped


def random_batch(seed: int, b: int = 6, t: int = 9):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    # log-ratios in [-0.6, 0.6]: ratios from 0.55 to 1.8, so both clip bounds are crossed
    logp = old + (torch.rand(b, t, generator=g, dtype=torch.float64) - 0.5) * 1.2
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    mask = (torch.rand(b, t, generator=g) > 0.25).double()
    mask[:, 0] = 1.0
    weights = 0.5 + torch.rand(b, t, generator=g, dtype=torch.float64)
    ref = old + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.3
    return logp, old, adv, mask, weights, ref


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("use_weights,kl_coef", [(False, 0.0), (True, 0.0), (True, 0.05)])
def test_grpo_loss_matches_numpy(seed, use_weights, kl_coef):
    logp, old, adv, mask, weights, ref = random_batch(seed)
    w = weights if use_weights else None
    got = grpo_loss(logp, old, adv, mask, 0.2, 0.28, w, ref, kl_coef).item()
    want = np_loss(logp.numpy(), old.numpy(), adv.numpy(), mask.numpy(), 0.2, 0.28,
                   None if w is None else w.numpy(), ref.numpy(), kl_coef)
    assert got == pytest.approx(want, rel=1e-10)
    ratios = torch.exp(logp - old)[mask.bool()]
    assert (ratios < 0.8).any() and (ratios > 1.28).any()  # both bounds exercised


def test_k3_matches_numpy():
    logp, _, _, _, _, ref = random_batch(3)
    d = (ref - logp).numpy()
    np.testing.assert_allclose(k3_kl(logp, ref).numpy(), np.exp(d) - d - 1, rtol=1e-12)
    assert (k3_kl(logp, ref) >= 0).all()


# (ratio, advantage, gradient flows?) under clip_low 0.2, clip_high 0.28
CLIP_CASES = [
    (1.25, 1.0, True),  # inside clip-higher's wider upper bound (0.2 would have clipped it)
    (1.35, 1.0, False),  # above 1 + clip_high with a positive advantage: clipped
    (1.35, -1.0, True),  # above the bound but the advantage is negative: min keeps the ratio
    (0.75, -1.0, False),  # below 1 - clip_low with a negative advantage: clipped
    (0.75, 1.0, True),  # below the bound with a positive advantage: unclipped
]


@pytest.mark.parametrize("ratio,adv,flows", CLIP_CASES)
def test_clip_higher_bounds(ratio, adv, flows):
    logp = torch.tensor([[np.log(ratio)]], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(1, 1, dtype=torch.float64)
    loss = grpo_loss(logp, old, torch.tensor([adv], dtype=torch.float64), torch.ones(1, 1),
                     0.2, 0.28)
    loss.backward()
    assert (logp.grad.abs().item() > 0) == flows
    clipped = min(max(ratio, 0.8), 1.28)
    assert loss.item() == pytest.approx(-min(ratio * adv, clipped * adv))


def test_identity_weights_reproduce_the_unweighted_loss_exactly():
    logp, old, adv, mask, _, ref = random_batch(4)
    plain = grpo_loss(logp, old, adv, mask, 0.2, 0.28, None, ref, 0.1)
    ones = grpo_loss(logp, old, adv, mask, 0.2, 0.28, torch.ones_like(mask), ref, 0.1)
    assert torch.equal(plain, ones)


@pytest.fixture(scope="module")
def learnable(tokenizer):
    """A trivially learnable variant: two-digit sums, no slips, but half the answers in the
    rejected `~` format; a tiny model pretrained briefly on it is right about half the time."""
    train, _ = make_split(30, 4, 0, 2, 2)
    style = CorpusStyle(p_chain=1.0, slip_chain=0.0, slip_pairs=0.0, slip_pairs_total=0.0,
                        p_bad_format=0.5)
    texts = [t for seed in range(8) for t in make_corpus(train, style, seed)]
    prompts = [t.split(" : ")[0] + " :" for t in texts]
    examples = encode_examples(tokenizer, prompts, [t.split(" : ")[1] for t in texts])
    shape = ModelShape(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       max_length=32)
    model = build_model(shape, tokenizer, seed=0)
    train_lm(model, examples, LMParams(steps=300, batch_size=32, lr=1e-2, warmup_steps=10),
             tokenizer.pad_token_id, mask_prompt=False)
    return model, train


def test_short_rl_run_raises_reward_and_changes_every_parameter(learnable, tokenizer, tmp_path):
    base, train = learnable
    policy = build_model(ModelShape(hidden_size=32, num_layers=2, num_heads=2,
                                    intermediate_size=64, max_length=32), tokenizer, seed=0)
    policy.load_state_dict(base.state_dict())
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    params = GRPOParams(steps=24, prompts_per_step=8, group_size=8, max_new_tokens=8, lr=3e-4,
                        save_every=10, seed=0, track_kl=True)
    log = train_grpo(policy, tokenizer, records_of(train), grade, params, checkpoint_dir=tmp_path)
    first = np.mean([r["reward_mean"] for r in log[:3]])
    last = np.mean([r["reward_mean"] for r in log[-3:]])
    assert 0.2 < first < 0.8, "the variant should start with mixed rewards"
    assert last > first + 0.15, (first, last)
    unchanged = [n for n, p in policy.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, unchanged
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 20, 24]
    for key in ("reward_mean", "accuracy", "entropy", "kl_base", "response_length",
                "dropped_share"):
        assert np.isfinite(log[-1][key]), key
    assert log[-1]["kl_base"] > 0 and all(0 <= r["dropped_share"] <= 1 for r in log)


def test_identity_hook_matches_no_hook_in_training(learnable, tokenizer):
    base, train = learnable
    shape = ModelShape(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       max_length=32)
    seen: list[TokenContext] = []

    def ones(ctx: TokenContext) -> torch.Tensor:
        seen.append(ctx)
        return torch.ones_like(ctx.mask)

    params = GRPOParams(steps=2, prompts_per_step=8, group_size=4, max_new_tokens=8, lr=1e-2,
                        track_kl=True)
    results = []
    for hook in (None, ones):
        policy = build_model(shape, tokenizer, seed=0)
        policy.load_state_dict(base.state_dict())
        train_grpo(policy, tokenizer, records_of(train), grade, params, weight_hook=hook)
        results.append(dict(policy.named_parameters()))
    assert all(torch.equal(results[0][n], results[1][n]) for n in results[0])
    ctx = seen[0]
    b, t = ctx.mask.shape
    assert ctx.logits.shape[:2] == (b, t) and ctx.ref_logits.shape == ctx.logits.shape
    assert ctx.logprobs.requires_grad and not ctx.old_logprobs.requires_grad
    assert ctx.advantages.shape == (b,) and ctx.ref_logprobs.shape == (b, t)


def test_update_stats_match_numpy():
    logp, old, adv, mask, _, _ = random_batch(5)
    stats = summarize_updates([update_stats(logp, old, adv, mask, 0.2, 0.28)])
    on = mask.numpy().astype(bool)
    r = np.exp(logp.numpy() - old.numpy())
    a = np.broadcast_to(adv.numpy()[:, None], r.shape)
    low = (r < 0.8) & (a < 0)  # clipped term wins the min: no gradient through the ratio
    high = (r > 1.28) & (a > 0)
    assert stats["clip_frac_low"] == pytest.approx(low[on].mean())
    assert stats["clip_frac_high"] == pytest.approx(high[on].mean())
    assert stats["clip_frac"] == pytest.approx((low | high)[on].mean())
    assert 0 < stats["clip_frac_low"] and 0 < stats["clip_frac_high"]
    assert stats["ratio_std"] == pytest.approx(r[on].std(ddof=1))
    assert (stats["ratio_min"], stats["ratio_max"]) == pytest.approx((r[on].min(), r[on].max()))
    assert stats["k3_old"] == pytest.approx((r - 1 - np.log(r))[on].mean())
    assert np.isnan(stats["k3_old_later"]) and stats["n_updates"] == 1
    # a second update: k3_old_later is its mean alone; k3_old pools both updates' tokens
    second = update_stats(old, old, adv, mask, 0.2, 0.28)  # on-policy: r = 1, k3 = 0
    two = summarize_updates([update_stats(logp, old, adv, mask, 0.2, 0.28), second])
    assert two["k3_old_later"] == 0.0 and two["k3_old"] == pytest.approx(stats["k3_old"] / 2)


def test_default_dapo_updates_are_off_policy_and_clip(learnable, tokenizer):
    # the trainer's defaults (minibatches, epochs, lr, clips) on a small batch: after the first
    # update of a rollout batch the policy has moved, so k3 > 0 and some ratios leave the band
    base, train = learnable
    policy = build_model(ModelShape(hidden_size=32, num_layers=2, num_heads=2,
                                    intermediate_size=64, max_length=32), tokenizer, seed=0)
    policy.load_state_dict(base.state_dict())
    defaults = GRPOParams()
    assert defaults.minibatches * defaults.epochs >= 4, "several updates per rollout batch"
    firsts: list[float] = []

    def record_first(ctx: TokenContext) -> torch.Tensor:
        firsts.append(float((ctx.logprobs.detach() - ctx.old_logprobs).abs().max()))
        return torch.ones_like(ctx.mask)

    params = GRPOParams(steps=6, prompts_per_step=8, group_size=8, max_new_tokens=8)
    log = train_grpo(policy, tokenizer, records_of(train), grade, params,
                     weight_hook=record_first)
    updated = [r for r in log if r["n_updates"] >= 2]
    assert len(updated) >= 4, [r["n_updates"] for r in log]
    assert all(r["n_updates"] == defaults.minibatches * defaults.epochs for r in updated)
    # k3 on the non-first updates is positive at every step, and above the pooled mean,
    # which includes the on-policy first update (exactly r = 1 up to float noise)
    assert all(r["k3_old_later"] > 1e-6 for r in updated), [r["k3_old_later"] for r in updated]
    assert all(r["k3_old_later"] > r["k3_old"] for r in updated)
    per_step = defaults.minibatches * defaults.epochs
    assert max(firsts[::per_step]) < 1e-5 < min(max(firsts[i::per_step]) for i in (1, 2, 3))
    assert sum(r["clip_frac"] for r in updated) > 0
    assert all(r["ratio_max"] > 1 > r["ratio_min"] for r in updated)
    assert all(r["clip_frac"] == pytest.approx(r["clip_frac_low"] + r["clip_frac_high"])
               for r in updated)


def test_shared_prompt_logits_and_gradients_equal_one_forward_per_row():
    """response_logits runs each distinct prompt once and expands its KV cache to its group:
    the logits at response tokens and the gradients of a loss on them equal those of one
    full-sequence forward per row (the previous way), to float32 rounding. Prompts of unequal
    lengths (left padding) and responses of unequal lengths (right padding) included."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr.generation.sampler import Generation
    from rlvr.training.grpo import pack, response_logits, token_logprobs

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256))
    g = torch.Generator().manual_seed(1)
    gens = []
    for n_prompt in (70, 55, 90):
        prompt = torch.randint(3, 300, (n_prompt,), generator=g).tolist()
        for _ in range(4):
            n = int(torch.randint(3, 30, (1,), generator=g))
            gens.append(Generation(prompt, torch.randint(3, 300, (n,), generator=g).tolist(),
                                   [0.0] * n, "length"))
    batch = pack(gens, pad_id=0)
    rows = torch.tensor([0, 5, 1, 9, 2, 10, 11])  # a minibatch mixing the groups
    tokens, mask = batch.ids[rows, batch.prompt_width:], batch.mask[rows]

    def per_row(model, batch, rows):
        keep = batch.ids.shape[1] - batch.prompt_width + 1
        return model(input_ids=batch.ids[rows], attention_mask=batch.attn[rows],
                     position_ids=batch.positions[rows], logits_to_keep=keep).logits[:, :-1]

    results = []
    for forward in (per_row, response_logits):
        model.zero_grad(set_to_none=True)
        logits = forward(model, batch, rows).float()
        loss = (token_logprobs(logits, tokens) * mask).sum()
        loss.backward()
        results.append((logits.detach() * mask[..., None], [p.grad for p in model.parameters()]))
    (ref, ref_grads), (got, grads) = results
    assert got.shape == ref.shape == (len(rows), batch.ids.shape[1] - batch.prompt_width, 300)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5 * float(b.abs().max()), rtol=1e-4)
    assert any(float(b.abs().max()) > 0 for b in ref_grads)


def test_two_threads_give_the_same_bits_every_time():
    """`rl.threads: 2` is a param, not a resource: a training forward and backward on two
    threads repeats bit for bit (static partitioning), so the rl stage stays reproducible."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr.generation.sampler import Generation
    from rlvr.models.loading import pin_torch_threads
    from rlvr.training.grpo import pack, response_logits, token_logprobs

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=2000, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256))
    g = torch.Generator().manual_seed(1)
    gens = [Generation(list(range(10 + i, 90 + i)), torch.randint(3, 2000, (40,), generator=g)
                       .tolist(), [0.0] * 40, "length") for i in range(4) for _ in range(4)]
    batch = pack(gens, pad_id=0)
    rows, tokens = torch.arange(len(gens)), batch.ids[:, batch.prompt_width:]
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (2, 2, 2):
            pin_torch_threads(threads)
            assert torch.get_num_threads() == threads
            model.zero_grad(set_to_none=True)
            (token_logprobs(response_logits(model, batch, rows), tokens) * batch.mask).sum() \
                .backward()
            runs.append([p.grad.clone() for p in model.parameters()])
    finally:
        torch.set_num_threads(before)
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other, strict=True))
