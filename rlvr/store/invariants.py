"""The token table's invariants, as per-row verdicts the quality gates validate.

A token row is a few numbers about two distributions p (base) and q (tuned) that the table does
not store, so most of its columns cannot be recomputed; but the math ties them together, and
every tie is checked here (y is the realised token, t the tuned top-1, p_y = exp(logprob_base)):

- delta_logprob = logprob_tuned - logprob_base;
- JS <= (KL(p||q) + KL(q||p)) / 4 (convexity of KL in its second argument), and with
  TV(p, q) >= |p_y - q_y|, Pinsker gives JS >= TV^2 / 2 and each KL >= 2 TV^2;
- the tie rule (`rlvr.tokens.pairstats`): rank = 1 + #(higher logit) + #(equal logit, lower
  id), so p_y <= 1 / rank, rank 1 is the top-1 and nothing else (for y and for each model's
  top-1 under the other: rank_in_base_of_top1_tuned = 1 iff the top-1s agree, and
  rank_in_tuned_of_top1_base likewise), a rank-1 token has entropy >= -log p_y (the
  min-entropy); ranks of y and t under base order as their probabilities do; t = y pins
  rank_in_base_of_top1_tuned and prob_base_of_top1_tuned, b = y (b the base top-1) pins
  rank_in_tuned_of_top1_base;
- top-k overlaps are counts / k: c_k in {0..k}, c_1 = [top1_base = top1_tuned], and
  0 <= c_(k+1) - c_k <= 2.

Against the samples table (when given): every token row belongs to a sampled response, carries
its token ids, length and reward, and every sampled response is present. Against the tokenizer
(when given): `token_text` is the decoded id; without it, one id has one text.

Each check returns an object array reading `ok` on good rows and, on bad ones, the first rule
broken with the row's file, response, position and values: GX then validates the column against
{"ok"}, and its failure summary shows an offending row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerBase

BOUND = 1e4  # nats: no real model's |log-prob| or KL comes near (this catches inf and 1e30)
TOL = 1e-4  # float32 sums over a vocabulary: bounds hold to well within this
OVERLAP_K = 5

Rule = tuple[np.ndarray, str, Sequence[str]]  # (bad rows, what is wrong, columns to show)


def _fmt(value: object) -> str:
    return repr(value) if isinstance(value, str) else f"{value:.6g}"


# columns that name a row, in the order a message shows them: `part p/s position N` for
# responses, `variant seed N step N metric M` for training logs
NAMING = ("model", "variant", "prompt_id", "sample_id")


def suffix_columns(columns) -> tuple[str, ...]:
    """The columns shown as `name value` after a row's name (a run's seed only in a log)."""
    seed = ("seed",) if "variant" in columns else ()
    return tuple(c for c in ("position", *seed, "step", "metric") if c in columns)


def _where(df: pd.DataFrame) -> list[str]:
    names = [c for c in NAMING if c in df.columns]
    after = suffix_columns(df.columns)
    part = df["part"] if "part" in df.columns else pd.Series("", index=df.index)
    out = []
    for f, n, a in zip(part, df[names].itertuples(index=False),
                       df[list(after)].itertuples(index=False), strict=True):
        at = "".join(f" {c} {v}" for c, v in zip(after, a, strict=True))
        out.append(f"{f} {'/'.join(map(str, n))}{at}".strip())
    return out


def verdicts(df: pd.DataFrame, rules: Sequence[Rule]) -> np.ndarray:
    """Per row: `ok`, or the first of `rules` it breaks, where and with which values."""
    out = np.full(len(df), "ok", dtype=object)
    for bad, what, columns in rules:
        new = np.asarray(bad) & (out == "ok")
        if new.any():
            sub = df[new]
            values = [", ".join(f"{c}={_fmt(v)}" for c, v in zip(columns, row, strict=True))
                      for row in sub[list(columns)].itertuples(index=False)]
            out[new] = [f"{w}: {what} ({v})" for w, v in zip(_where(sub), values, strict=True)]
    return out


def _close(a: pd.Series, b: pd.Series, rtol: float = 1e-5) -> np.ndarray:
    return np.abs(a - b) <= TOL * 0.01 + rtol * np.maximum(np.abs(a), np.abs(b))


def bound_rules(df: pd.DataFrame, required: Sequence[str],
                bounds: Sequence[tuple[str, float | None, float | None]]) -> list[Rule]:
    """Required columns are not null (NaN included); bounded ones lie in [lo, hi]."""
    rules: list[Rule] = [(df[c].isna().values, f"{c} is null", [c]) for c in required]
    for c, lo, hi in bounds:
        x = df[c].astype(np.float64)
        bad = ((x < lo) if lo is not None else False) | ((x > hi) if hi is not None else False)
        span = f"[{'-inf' if lo is None else _fmt(lo)}, {'inf' if hi is None else _fmt(hi)}]"
        rules.append((np.asarray(bad), f"{c} outside {span}", [c]))
    return rules


def delta_rules(df: pd.DataFrame) -> list[Rule]:
    diff = df.logprob_tuned.astype(np.float64) - df.logprob_base.astype(np.float64)
    return [(~_close(df.delta_logprob, diff), "delta_logprob != logprob_tuned - logprob_base",
             ["delta_logprob", "logprob_tuned", "logprob_base"])]


def divergence_rules(df: pd.DataFrame) -> list[Rule]:
    kl_sum = df.kl_base_tuned.astype(np.float64) + df.kl_tuned_base
    tv = np.abs(np.exp(df.logprob_base.astype(np.float64)) - np.exp(df.logprob_tuned))
    kls = ["js", "kl_base_tuned", "kl_tuned_base"]
    probs = ["logprob_base", "logprob_tuned"]
    return [
        (df.js > kl_sum / 4 + TOL, "js above (kl_base_tuned + kl_tuned_base) / 4", kls),
        (df.js < tv**2 / 2 - TOL, "js below (exp(logprob_base) - exp(logprob_tuned))^2 / 2",
         ["js", *probs]),
        (np.minimum(df.kl_base_tuned, df.kl_tuned_base) < 2 * tv**2 - TOL,
         "a KL below 2 (exp(logprob_base) - exp(logprob_tuned))^2 (Pinsker)", kls[1:] + probs),
    ]


def _top1_rules(df: pd.DataFrame, side: str) -> list[Rule]:
    """The realised token under one model: rank 1 iff it is the top-1 (the tie rule orders
    equal logits by id, so no other token shares rank 1)."""
    rank, top1, lp, ent = (df[f"{c}_{side}"] for c in ("rank", "top1", "logprob", "entropy"))
    p = np.exp(lp.astype(np.float64))
    cols = [f"rank_{side}", "token_id", f"top1_{side}", f"logprob_{side}", f"entropy_{side}"]
    return [
        ((df.token_id == top1) != (rank == 1),
         f"rank_{side} is 1 but the token is not top1_{side}, or the reverse (tie rule)", cols),
        (p > 1 / rank + TOL, f"exp(logprob_{side}) above 1 / rank_{side}", cols),
        ((rank == 1) & (ent < -lp - TOL),  # the top-1's surprisal is the min-entropy
         f"rank_{side} 1 but entropy_{side} below -logprob_{side}", cols),
    ]


def rank_rules(df: pd.DataFrame) -> list[Rule]:
    p = np.exp(df.logprob_base.astype(np.float64))
    pt, rt = df.prob_base_of_top1_tuned, df.rank_in_base_of_top1_tuned
    rb = df.rank_in_tuned_of_top1_base
    same_top1 = df.top1_base == df.top1_tuned
    cols = ["rank_in_base_of_top1_tuned", "prob_base_of_top1_tuned", "top1_base", "top1_tuned"]
    bcols = ["rank_in_tuned_of_top1_base", "top1_base", "top1_tuned"]
    ycols = [*cols, "token_id", "rank_base", "logprob_base"]
    return [
        *_top1_rules(df, "base"), *_top1_rules(df, "tuned"),
        (same_top1 != (rt == 1),
         "rank_in_base_of_top1_tuned is 1 iff the top-1s agree, but not here (tie rule)", cols),
        (same_top1 != (rb == 1),
         "rank_in_tuned_of_top1_base is 1 iff the top-1s agree, but not here (tie rule)", bcols),
        (pt > 1 / rt + TOL, "prob_base_of_top1_tuned above 1 / rank_in_base_of_top1_tuned", cols),
        ((df.top1_tuned == df.token_id) & ((rt != df.rank_base) | ~_close(pt, p)),
         "the token is the tuned top-1 but its base rank or probability differ", ycols),
        ((df.top1_base == df.token_id) & (rb != df.rank_tuned),
         "the token is the base top-1 but its tuned rank differs from rank_in_tuned_of_top1_base",
         [*bcols, "token_id", "rank_tuned"]),
        (((p > pt + TOL) & (df.rank_base >= rt)) | ((p < pt - TOL) & (df.rank_base <= rt)),
         "base ranks of the token and of the tuned top-1 order unlike their probabilities",
         ycols),
    ]


def overlap_rules(df: pd.DataFrame) -> list[Rule]:
    counts = [df[f"topk_overlap_{k}"].astype(np.float64) * k for k in range(1, OVERLAP_K + 1)]
    cols = [f"topk_overlap_{k}" for k in range(1, OVERLAP_K + 1)]
    rules = [(~((np.abs(c - c.round()) <= 1e-3) & (c.round() >= 0) & (c.round() <= k)),
              f"topk_overlap_{k} is not a multiple of 1/{k} in [0, 1]", cols)
             for k, c in enumerate(counts, 1)]
    rules.append((counts[0].round() != (df.top1_base == df.top1_tuned),
                  "topk_overlap_1 disagrees with top1_base == top1_tuned",
                  [cols[0], "top1_base", "top1_tuned"]))
    for k in range(1, OVERLAP_K):
        step = counts[k].round() - counts[k - 1].round()
        rules.append(((step < 0) | (step > 2), f"top-{k + 1} overlap count is not top-{k}'s "
                      "+ 0, 1 or 2", cols))
    return rules


def text_rules(df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase | None) -> list[Rule]:
    """token_text is the tokenizer's text of token_id (or, without one, the same for each id)."""
    if tokenizer is not None:
        ids = df.token_id.unique()
        expected = df.token_id.map(dict(zip(ids, (tokenizer.decode([int(i)]) for i in ids),
                                            strict=True)))
        what = "token_text is not the tokenizer's text of token_id"
    else:
        counts = df.groupby(["token_id", "token_text"]).size().reset_index(name="n")
        mode = counts.sort_values("n", ascending=False).drop_duplicates("token_id")
        expected = df.token_id.map(mode.set_index("token_id").token_text)
        what = "token_text differs from this token_id's text on other rows"
    return [(df.token_text.values != expected.values, what, ["token_text", "token_id"])]


def sample_rules(df: pd.DataFrame, samples: pd.DataFrame) -> tuple[list[Rule], list[str]]:
    """Token rows against the samples of their generator: rules per row, and the sampled
    responses that have no token rows at all."""
    keys = ["prompt_id", "sample_id"]
    ids = samples[[*keys, "response_token_ids", "n_tokens", "reward"]].explode(
        "response_token_ids")
    ids["position"] = ids.groupby(keys, sort=False).cumcount()
    ids["response_token_ids"] = pd.to_numeric(ids["response_token_ids"])
    ids = ids.rename(columns={"response_token_ids": "sampled_id", "n_tokens": "sampled_n",
                              "reward": "sampled_reward"})
    got = df[[*keys, "position"]].merge(ids, on=[*keys, "position"], how="left")
    known = df[keys].merge(samples[keys].assign(known=True), on=keys, how="left").known
    rules = [
        (known.isna().values, "no such response in the samples table", keys),
        (got.sampled_id.isna().values, "position past the sampled response's end",
         ["position", "n_tokens"]),
        ((got.sampled_id.values != df.token_id.values) & got.sampled_id.notna().values,
         "token_id differs from the sampled response_token_ids", ["token_id"]),
        ((got.sampled_n.values != df.n_tokens.values) & got.sampled_n.notna().values,
         "n_tokens differs from the samples table", ["n_tokens"]),
        ((got.sampled_reward.values != df.reward.values) & got.sampled_reward.notna().values,
         "reward differs from the samples table", ["reward"]),
    ]
    present = samples[keys].merge(df[keys].drop_duplicates().assign(seen=True), on=keys,
                                  how="left")
    missing = present[present.seen.isna()]
    absent = [f"sampled response {p}/{s} has no token rows" for p, s in
              zip(missing.prompt_id, missing.sample_id, strict=True)]
    return rules, absent
