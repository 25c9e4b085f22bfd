"""Divergence-weighted advantage: weight range and detachment, the three divergences against
independent references, s = 0 equivalence with the unweighted loss, and a tiny grid end to end."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from rlvr.testbed.digits import grade
from rlvr.testbed.prompts import records_of
from rlvr.weighted.weights import (
    advantage_weights,
    delta_base,
    js_base,
    k3_old,
    make_weight_hook,
    needs_reference,
    renormalize,
    token_divergence,
    weight_advantages,
)


def _random_batch(seed: int, b: int = 3, t: int = 5, v: int = 11, scale: float = 2.0):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, t, v, generator=gen) * scale).requires_grad_(True)
    ref_logits = torch.randn(b, t, v, generator=gen) * scale
    tokens = torch.randint(0, v, (b, t), generator=gen)
    logprobs = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    ref_logprobs = torch.log_softmax(ref_logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    old_logprobs = (logprobs + 0.3 * torch.randn(b, t, generator=gen)).detach()
    mask = torch.ones(b, t)
    mask[0, -2:] = 0  # a short response: padding at the end
    return SimpleNamespace(
        logits=logits, ref_logits=ref_logits, logprobs=logprobs, ref_logprobs=ref_logprobs,
        old_logprobs=old_logprobs, mask=mask, advantages=torch.randn(b, generator=gen),
    )


@pytest.mark.parametrize("s", [0.0, 0.5, 1.0, 1.9])
@pytest.mark.parametrize("alpha", [-50.0, -1.0, 1.0, 50.0])
def test_weights_lie_in_open_band_and_are_detached(s, alpha):
    gen = torch.Generator().manual_seed(0)
    d = (torch.randn(4, 7, generator=gen) * 0.1).requires_grad_(True)
    mask = (torch.rand(4, 7, generator=gen) > 0.3).float()
    w = advantage_weights(d, mask, s, alpha)
    assert not w.requires_grad and w.grad_fn is None
    on = w[mask.bool()]
    if s > 0:  # open band: the sigmoid never reaches 0 or 1
        assert bool((on > 1 - s / 2).all()) and bool((on < 1 + s / 2).all())
    else:
        assert bool((on == 1).all())
    assert torch.equal(w[~mask.bool()], torch.ones_like(w[~mask.bool()]))
    expected = 1 + s * (1 / (1 + np.exp(-alpha * d.detach().numpy())) - 0.5)
    np.testing.assert_allclose(w.numpy(), np.where(mask.numpy() > 0, expected, 1.0), rtol=1e-6)


def test_weight_direction_follows_sign_of_alpha():
    d = torch.tensor([[0.0, 0.01, 0.3]])
    mask = torch.ones_like(d)
    high = advantage_weights(d, mask, 1.0, 20.0)[0]
    low = advantage_weights(d, mask, 1.0, -20.0)[0]
    assert high[0] == low[0] == 1.0  # D = 0 always gets weight 1
    assert high[2] > high[1] > 1.0 > low[1] > low[2]


def test_weights_ignore_garbage_on_masked_positions():
    d = torch.tensor([[0.1, float("nan"), float("-inf")]])
    w = advantage_weights(d, torch.tensor([[1.0, 0.0, 0.0]]), 1.0, 3.0)
    assert torch.isfinite(w).all() and w[0, 1] == w[0, 2] == 1.0


@pytest.mark.parametrize("s", [-0.1, 2.0, 3.0])
def test_bad_scale_is_rejected(s):
    with pytest.raises(ValueError, match="weight scale"):
        make_weight_hook("k3_old", s, 1.0)


def test_unknown_divergence_is_rejected():
    with pytest.raises(ValueError, match="unknown divergence"):
        make_weight_hook("kl_base", 1.0, 1.0)


def test_k3_on_hand_made_ratios():
    ratios = [1.0, 2.0, 0.5, 1e-3, 1 + 1e-7, 10.0]  # one case each: equal, up, down, tiny, ~1, big
    expected = [r - 1 - math.log(r) for r in ratios]
    old = torch.log(torch.tensor([[0.2] * len(ratios)], dtype=torch.float64))
    new = old + torch.log(torch.tensor([ratios], dtype=torch.float64))
    got = k3_old(new, old)[0].tolist()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)
    assert got[0] == 0.0


def test_js_base_matches_scipy_jensen_shannon():
    batch = _random_batch(1)
    got = js_base(batch.logits, batch.ref_logits)
    assert got.shape == batch.mask.shape and not got.requires_grad
    p = torch.softmax(batch.logits.detach().double(), -1).numpy()
    q = torch.softmax(batch.ref_logits.double(), -1).numpy()
    ref = jensenshannon(p, q, axis=-1) ** 2  # scipy returns the distance sqrt(JS), natural log
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)
    assert float(got.max()) <= math.log(2)


def test_js_base_is_chunked_without_changing_values(monkeypatch):
    batch = _random_batch(2, b=4, t=9)
    whole = js_base(batch.logits, batch.ref_logits)
    monkeypatch.setattr("rlvr.weighted.weights.JS_CHUNK_ROWS", 5)
    # row sums may vectorise differently per chunk: equal up to float32 rounding
    torch.testing.assert_close(js_base(batch.logits, batch.ref_logits), whole, rtol=0, atol=1e-6)


def test_js_base_matches_the_scorer_on_two_real_models(tiny_pair, tokenizer):
    from rlvr.tokens.divergence import js

    base, tuned = tiny_pair
    ids = torch.tensor([tokenizer("sum 3 5 7 : chain 3 8 15 ; answer = 15")["input_ids"]])
    with torch.no_grad():
        a, b = tuned(input_ids=ids).logits, base(input_ids=ids).logits
    direct = js(torch.log_softmax(a.float(), -1), torch.log_softmax(b.float(), -1))
    assert torch.equal(js_base(a, b), direct)
    assert float(direct.min()) > 0


def test_delta_base_matches_direct_log_prob_gap():
    batch = _random_batch(3)
    got = delta_base(batch.logprobs, batch.ref_logprobs)
    lp = torch.log_softmax(batch.logits.detach().double(), -1)
    lq = torch.log_softmax(batch.ref_logits.double(), -1)
    tok = (torch.log_softmax(batch.logits.detach(), -1) - batch.logprobs.detach().unsqueeze(-1))
    idx = tok.abs().argmin(-1, keepdim=True)  # recover the sampled token ids
    ref = (lp.gather(-1, idx) - lq.gather(-1, idx)).squeeze(-1)
    np.testing.assert_allclose(got.double().numpy(), ref.numpy(), atol=1e-5)
    assert not got.requires_grad


@pytest.mark.parametrize("name", ["k3_old", "js_base", "delta_base"])
def test_hook_equals_weights_of_the_named_divergence(name):
    batch = _random_batch(4)
    w = make_weight_hook(name, 0.8, -3.0)(batch)
    assert torch.equal(w, advantage_weights(token_divergence(name, batch), batch.mask, 0.8, -3.0))
    assert needs_reference(name) == (name != "k3_old")


def test_reference_divergence_without_reference_names_the_fix():
    batch = _random_batch(5)
    batch.ref_logits, batch.ref_logprobs = None, None
    with pytest.raises(ValueError, match="track_kl=True"):
        make_weight_hook("js_base", 1.0, 1.0)(batch)


def test_weight_advantages_broadcasts_per_response():
    adv = torch.tensor([1.0, -2.0])
    w = torch.tensor([[1.0, 1.5], [0.5, 1.0]])
    assert torch.equal(weight_advantages(adv, w), torch.tensor([[1.0, 1.5], [-1.0, -2.0]]))


# --- through the trainer and the grid, on a briefly pretrained tiny model ----------------------

TRAIN_STYLE = dict(p_chain=1.0, slip_chain=0.1, p_bad_format=0.3)  # right ~10% of the time


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Intra-op threads spin when ~8 processes share 2 cores: one thread ran these 10x faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained_tiny(tokenizer):
    """A tiny model pretrained for a few seconds on 2-3 digit sums, plus its train/eval split.

    Untrained models are never right, so every GRPO group would be dropped and no weight would
    ever be computed; this one is right often enough for informative groups.
    """
    from rlvr.testbed.digits import CorpusStyle, make_corpus, make_split
    from rlvr.testbed.model import ModelShape, build_model
    from rlvr.training.lm import LMParams, encode_examples, train_lm

    train, evals = make_split(200, 16, seed=0, min_digits=2, max_digits=3)
    shape = ModelShape(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       max_length=32)
    model = build_model(shape, tokenizer, seed=0)
    texts = make_corpus(train, CorpusStyle(**TRAIN_STYLE), seed=0)
    responses = [t[len(p.prompt) + 1 :] for p, t in zip(train, texts, strict=True)]
    examples = encode_examples(tokenizer, [p.prompt for p in train], responses)
    train_lm(model, examples, LMParams(steps=60, batch_size=32, lr=2e-2, warmup_steps=10),
             tokenizer.pad_token_id, mask_prompt=True)
    return model.eval(), train, evals


@pytest.fixture(scope="module")
def rollout_batch(trained_tiny, tokenizer):
    """Three responses to each of four train prompts, packed as the trainer packs them."""
    from rlvr.generation.sampler import SamplingParams
    from rlvr.training.grpo import pack, rollout

    model, train, _ = trained_tiny
    chosen = list(zip(records_of(train[:4]), tokenizer([p.prompt for p in train[:4]]).input_ids,
                      strict=True))
    gens, _ = rollout(model, tokenizer, chosen, grade, 3, SamplingParams(max_new_tokens=10), "t")
    return pack(gens, tokenizer.pad_token_id)


def _context_from_model(model, batch):
    """A TokenContext like the trainer's: fresh policy logits (with grad), a perturbed pi_old."""
    from rlvr.training.grpo import TokenContext, response_logits, token_logprobs

    rows = torch.arange(batch.ids.shape[0])
    tokens = batch.ids[:, batch.prompt_width :]
    logits = response_logits(model, batch, rows)
    logp = token_logprobs(logits, tokens)
    ref_logits = logits.detach() * 0.5  # a different "base" model
    gen = torch.Generator().manual_seed(0)
    return TokenContext(
        logprobs=logp, old_logprobs=(logp + 0.2 * torch.randn(logp.shape, generator=gen))
        .detach(), ref_logprobs=token_logprobs(ref_logits, tokens), logits=logits,
        ref_logits=ref_logits, mask=batch.mask, advantages=torch.randn(len(rows), generator=gen),
    )


@pytest.mark.parametrize("name", ["k3_old", "js_base", "delta_base"])
def test_zero_scale_gives_the_unweighted_loss_and_gradients_exactly(
    name, trained_tiny, rollout_batch
):
    from rlvr.training.grpo import grpo_loss

    model = trained_tiny[0]
    results = {}
    for label, s in (("plain", None), ("s0", 0.0), ("s1", 1.0)):
        model.zero_grad(set_to_none=True)
        ctx = _context_from_model(model, rollout_batch)
        w = None if s is None else make_weight_hook(name, s, 5.0)(ctx)
        loss = grpo_loss(ctx.logprobs, ctx.old_logprobs, ctx.advantages, ctx.mask, 0.2, 0.28, w)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results[label] = (loss.detach(), grads)
    assert torch.equal(results["plain"][0], results["s0"][0])
    assert all(torch.equal(a, b) for a, b in zip(results["plain"][1], results["s0"][1],
                                                  strict=True))
    # the comparison can fail: a real weighting changes the gradients
    assert not all(torch.equal(a, b) for a, b in zip(results["plain"][1], results["s1"][1],
                                                      strict=True))
    model.zero_grad(set_to_none=True)


def test_zero_scale_hook_trains_exactly_like_the_plain_trainer(trained_tiny, tokenizer):
    import copy

    from rlvr.training.grpo import GRPOParams, train_grpo

    model, train, _ = trained_tiny
    params = GRPOParams(steps=2, prompts_per_step=4, group_size=4, max_new_tokens=10,
                        minibatches=2, save_every=100, seed=1, track_kl=False)
    plain, zero, weighted = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    log = train_grpo(plain, tokenizer, records_of(train), grade, params)
    assert any(row["dropped_share"] < 1 for row in log), "no informative group: test is vacuous"
    train_grpo(zero, tokenizer, records_of(train), grade, params,
               weight_hook=make_weight_hook("k3_old", 0.0, 50.0))
    train_grpo(weighted, tokenizer, records_of(train), grade,
               dataclasses.replace(params, track_kl=True),
               weight_hook=make_weight_hook("js_base", 1.0, 50.0))
    pairs = list(zip(plain.parameters(), zero.parameters(), weighted.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b, _ in pairs)
    assert not all(torch.equal(a, c) for a, _, c in pairs)


def test_tiny_grid_runs_end_to_end(trained_tiny, tokenizer, tmp_path):
    import pandas as pd

    from rlvr.layout import Layout
    from rlvr.models.loading import save_model
    from rlvr.models.specs import ModelsParams
    from rlvr.testbed.split import problem_table
    from rlvr.training.grpo import GRPOParams
    from rlvr.weighted.grid import EvalSpec, VariantParams, WeightedParams
    from tasks.weighted import plan_runs, summarize_runs, train_run

    model, train, evals = trained_tiny
    layout = Layout(tmp_path)
    save_model(model, tokenizer, layout.model_dir("base"))
    layout.split("train").parent.mkdir()
    for split, problems in (("train", train), ("eval", evals)):
        problem_table(problems).to_parquet(layout.split(split))  # what `prepare` writes
    cfg = WeightedParams(
        variants={"baseline": VariantParams(), "k3_old_high": VariantParams("k3_old", 50.0)},
        s=1.0, seeds=2,
        rl=GRPOParams(steps=2, prompts_per_step=8, group_size=4, max_new_tokens=10),
        eval=EvalSpec(prompts=8, n_samples=2, max_new_tokens=10, every=1),
    )
    # the flow's recipe with each task's function (`.fn`): no Prefect API server is started
    names, seeds, base = plan_runs.fn(cfg, ModelsParams(), None, layout)
    assert base == ModelsParams().spec("base", layout)
    assert list(zip(names, seeds, strict=True)) == [
        ("baseline", 0), ("baseline", 1), ("k3_old_high", 0), ("k3_old_high", 1)]
    finals = [train_run.fn(cfg, base, layout, "toy", v, s)
              for v, s in zip(names, seeds, strict=True)]
    assert all(0 <= f["accuracy"] <= 1 for f in finals)
    summarize_runs.fn(cfg, layout)

    training = pd.read_parquet(tmp_path / "weighted" / "training.parquet")
    assert list(training.columns) == ["variant", "divergence", "alpha", "s", "seed", "step",
                                      "metric", "value"]
    acc = training[training.metric == "eval_accuracy"]
    assert sorted(acc.step.unique()) == [0, 1, 2] and len(acc) == 2 * 2 * 3
    # step 0 is the base model under shared eval streams: the same for every run
    assert acc[acc.step == 0].value.nunique() == 1
    weights = training[training.metric.str.startswith("weight_")]
    assert set(weights.variant) == {"k3_old_high"}, "the weighted runs computed weights"
    w = weights.pivot_table(index="seed", columns="metric", values="value")
    assert ((w.weight_min >= 1.0) & (w.weight_max <= 1.5)).all()  # alpha > 0, k3 >= 0 (float32
    # sigma saturates at |alpha D| > 17, so the band's end is reached)
    # the default trainer updates several times per rollout batch: k3 > 0 boosts some tokens
    # (with k3 = 0 everywhere every weight would be exactly 1)
    assert (w.weight_max > 1.0).all() and (w.weight_mean > 1.0).all()
    div = training[training.metric == "divergence_mean"]
    assert (div.value > 0).all() and len(div) == 2
    k3 = training[(training.metric == "train_k3_old_later") & training.value.notna()]
    assert len(k3) and (k3.value > 0).all()

    results = pd.read_csv(tmp_path / "weighted" / "results.csv")
    assert list(results.variant) == ["baseline", "k3_old_high"]
    finals = acc[acc.step == 2].groupby("variant").value
    np.testing.assert_allclose(results.set_index("variant")["mean"], finals.mean()[results.variant])
    np.testing.assert_allclose(results.set_index("variant")["std"], finals.std()[results.variant])
    assert math.isnan(results["diff"][0]) and results["n_seeds"].tolist() == [2, 2]
    plots = pd.read_csv(tmp_path / "plots" / "weighted_accuracy.csv")
    assert list(plots.columns) == ["step", "baseline", "k3_old_high"] and len(plots) == 3
    import json

    metrics = json.loads(layout.metrics("weighted").read_text())
    assert metrics["runs"] == 4 and set(metrics["k3_old_high"]) >= {"diff", "diff_lo", "diff_hi",
                                                                    "paired_mde"}
    assert metrics["power"]["n_seeds"] == 2 and metrics["k3_old_high"]["divergence"] == "k3_old"

    # the report's section 8 draws what this stage wrote, as a reader sees it
    from rlvr.report.blocks import ReportOptions, ReportParams
    from rlvr.report.page import render_page

    report = render_page(ReportOptions(ReportParams(), ModelsParams(), layout))
    page = report.html()
    section = page.split('<section id="weighted">')[1].split("</section>")[0]
    # final accuracy, training curves and the grid's DAPO diagnostics
    assert report.failures == [] and section.count("<img ") == 3
    assert "eval_accuracy over training" in section


def test_a_run_without_the_start_eval_trains_and_ends_the_same(trained_tiny, tokenizer,
                                                              tmp_path):
    """`eval.at_start: false` drops only the step-0 eval (the start model, the same for every
    run): the later evals are those of a run that had it, value for value."""
    import pandas as pd

    from rlvr.layout import Layout
    from rlvr.models.loading import save_model
    from rlvr.models.specs import ModelsParams
    from rlvr.training.grpo import GRPOParams
    from rlvr.weighted.grid import EvalSpec, Variant, train_and_evaluate

    model, train, evals = trained_tiny
    layout = Layout(tmp_path)
    save_model(model, tokenizer, layout.model_dir("base"))
    base = ModelsParams().spec("base", layout)
    grpo = GRPOParams(steps=2, prompts_per_step=4, group_size=4, max_new_tokens=10,
                      track_kl=False)
    tables = {}
    for at_start in (True, False):
        spec = EvalSpec(prompts=8, n_samples=2, max_new_tokens=10, every=1, at_start=at_start)
        out = tmp_path / f"run_{at_start}.parquet"
        train_and_evaluate(base, records_of(train), records_of(evals[:8]), "toy",
                           Variant("k3_old_high", "k3_old", 50.0, 1.0), 0, grpo, spec, out)
        table = pd.read_parquet(out)
        tables[at_start] = table[table.metric.str.startswith("eval_")].set_index(
            ["step", "metric"]).value
    assert sorted({s for s, _ in tables[True].index}) == [0, 1, 2]
    assert sorted({s for s, _ in tables[False].index}) == [1, 2]
    pd.testing.assert_series_equal(tables[True].drop(index=0, level="step"), tables[False])


@pytest.mark.parametrize(
    "a, b",
    [
        ([0.5, 0.6, 0.7], [0.4, 0.45, 0.5]),  # unequal variances
        ([0.1, 0.3, 0.2, 0.25], [0.2, 0.21]),  # unequal sizes
    ],
)
def test_welch_interval_matches_scipy(a, b):
    from scipy import stats

    from rlvr.weighted.summary import welch_interval

    diff, low, high, df, p = welch_interval(np.array(a), np.array(b))
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    np.testing.assert_allclose([low, high, df, p], [ci.low, ci.high, ref.df, ref.pvalue])
    assert diff == pytest.approx(np.mean(a) - np.mean(b))


def test_paired_interval_matches_scipy():
    from scipy import stats

    from rlvr.weighted.summary import paired_interval

    a, b = np.array([0.5, 0.62, 0.7]), np.array([0.4, 0.45, 0.66])
    low, high, p = paired_interval(a - b)
    ref = stats.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    np.testing.assert_allclose([low, high, p], [ci.low, ci.high, ref.pvalue])


def test_renormalized_weights_have_mean_one_on_response_tokens():
    batch = _random_batch(7)
    w = advantage_weights(k3_old(batch.logprobs, batch.old_logprobs), batch.mask, 1.0, 20.0)
    r = renormalize(w, batch.mask)
    on = batch.mask.bool()
    assert r[on].mean().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(r[~on], torch.ones_like(r[~on]))
    # ratios between tokens are kept: only the overall scale (the step size) changes
    torch.testing.assert_close(r[on] / r[on][0], w[on] / w[on][0])
    assert w[on].mean().item() > 1.01  # alpha > 0 and k3 >= 0: the raw weights scale the step up
    hook = make_weight_hook("k3_old", 1.0, 20.0, normalize=True)
    torch.testing.assert_close(hook(batch), r)
    empty = torch.zeros_like(batch.mask)
    assert torch.equal(renormalize(w, empty), w)  # nothing to normalise over


def test_paired_mde_has_the_stated_power():
    from scipy import stats

    from rlvr.weighted.summary import paired_mde

    rng = np.random.default_rng(0)
    for n, sd in ((4, 0.03), (8, 0.02), (20, 0.05)):
        mde = paired_mde(sd, n)
        # Monte Carlo: paired differences with true mean = MDE are detected 80% of the time
        d = rng.normal(mde, sd, size=(20000, n))
        p = stats.ttest_1samp(d, 0.0, axis=1).pvalue
        assert (p < 0.05).mean() == pytest.approx(0.8, abs=0.015), n
    # large n: the normal approximation (z_0.975 + z_0.8) sd / sqrt(n)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert paired_mde(1.0, 400) == pytest.approx(z / 20, rel=0.01)
    assert math.isnan(paired_mde(0.0, 5)) and math.isnan(paired_mde(1.0, 1))


def test_seeds_for_is_the_fewest_seeds_that_reach_the_effect():
    from rlvr.weighted.summary import paired_mde, seeds_for

    for sd, effect in ((0.075, 0.025), (0.03, 0.025), (0.01, 0.03), (0.2, 0.05)):
        n = seeds_for(sd, effect)
        assert paired_mde(sd, n) <= effect and (n == 2 or paired_mde(sd, n - 1) > effect)
    assert seeds_for(0.075, 0.025) > 50  # the README's toy grid: sd 7.5 points
    assert seeds_for(float("nan"), 0.025) is None and seeds_for(1.0, 1e-6, most=100) is None


def test_pooled_sd_matches_numpy():
    from rlvr.weighted.summary import pooled_sd

    groups = [np.array([0.1, 0.3, 0.2]), np.array([0.5, 0.4]), np.array([0.9])]
    sd, df = pooled_sd(groups)
    ss = sum(((g - g.mean()) ** 2).sum() for g in groups[:2])
    assert df == 3 and sd == pytest.approx(np.sqrt(ss / 3))
