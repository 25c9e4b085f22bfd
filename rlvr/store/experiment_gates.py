"""Quality gates of the experiment tables: cross_samples, cross_tokens, decisiveness, the
weighted grid's training logs and its results.

The same machinery as the samples and token gates (`rlvr.store.gates`): Great Expectations
suites over the rows, helper columns reading `ok` on good rows and naming the broken rule on bad
ones, one line per failed check, the validation result saved as JSON, `GateFailed` raised
before the table is marked complete (or the file renamed into place). Each gate checks key
completeness: every response has positions 0..n-1 once each, every cell or run has every
prompt, step and metric it should. Keys and never-null columns are the registry's
(`rlvr.store.registry`); what a table may hold (directions, rules, variants, the measured
positions) comes from the caller, so this module imports none of the stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import great_expectations.expectations as gxe
import numpy as np
import pandas as pd

from rlvr.store import invariants as inv
from rlvr.store.gates import response_check, run_suite, sample_id_check
from rlvr.store.registry import CROSS_SAMPLES, CROSS_TOKENS, DECISIVENESS, TRAINING
from rlvr.tokens.divergence import LN2

# keys and never-null columns: the registry's (rlvr.store.registry)
CROSS_SAMPLES_KEY, CROSS_TOKENS_KEY = list(CROSS_SAMPLES.keys), list(CROSS_TOKENS.keys)
CELL = CROSS_SAMPLES_KEY[:4]  # one cross-sampling cell (arm: its direction)
DECISIVE_KEY, TRAINING_KEY = list(DECISIVENESS.keys), list(TRAINING.keys)
DECISIVE_VALUES = ["value_before", "value_before_low", "value_before_high", "value_after",
                   "value_after_low", "value_after_high"]
SHARES = ["eval_accuracy", "eval_pass_at_n", "eval_share_eq_format", "train_accuracy",
          "train_reward_mean"]  # metrics that are shares of responses: in [0, 1]
RESULTS_REQUIRED = ["variant", "divergence", "alpha", "s", "n_seeds", "step", "mean"]
FINISH = ["eos", "length"]
TOL = 1e-6  # float32 rounding at a bound is not an error


def _in(column: str, values: Sequence) -> gxe.ExpectColumnValuesToBeInSet:
    return gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(values))


def _checks(df: pd.DataFrame, checks: dict[str, list[inv.Rule]]) -> tuple[pd.DataFrame, list]:
    """`df` with a helper column per check, and the expectations that they read `ok`."""
    df = df.assign(**{name: inv.verdicts(df, rules) for name, rules in checks.items()})
    return df, [_in(name, ["ok"]) for name in checks]


def _missing(expected: pd.DataFrame, found: pd.DataFrame, keys: list[str], what: str) -> list[str]:
    """One line naming how many rows of `expected` (by `keys`) `found` lacks, and the first."""
    seen = found[keys].drop_duplicates().assign(_seen=True)
    gone = expected[keys].drop_duplicates().merge(seen, on=keys, how="left")
    gone = gone[gone._seen.isna()]
    if gone.empty:
        return []
    first = ", ".join(f"{k} {v}" for k, v in zip(keys, gone.iloc[0][keys], strict=True))
    return [f"{len(gone)} {what} missing; e.g. {first}"]


# --- cross-sampling -------------------------------------------------------------------------

def check_cross_samples(df: pd.DataFrame, directions: Sequence[str], rules: Sequence[str],
                        result_path: str | Path) -> dict:
    """Gate the published cross_samples rows (every final cell, one part file each)."""
    df = df.reset_index(drop=True)
    n_ids = df.response_token_ids.map(len)
    base_tuned = df.pair.str.split("__", n=1, expand=True)
    forward = (df.primary_model == base_tuned[0]) & (df.intervention_model == base_tuned[1])
    backward = (df.primary_model == base_tuned[1]) & (df.intervention_model == base_tuned[0])
    share = df.n_switched / df.n_tokens.where(df.n_tokens > 0)
    df, expectations = _checks(df, {
        "bounds_check": inv.bound_rules(df, CROSS_SAMPLES.required, [
            ("target_budget", 0.0, 1.0), ("switch_share", 0.0, 1.0), ("n_tokens", 1, None),
            ("n_switched", 0, None), ("calibration_round", 0, None),
            ("max_new_tokens", 1, None)]),
        "length_check": [
            (n_ids.values != df.n_tokens.values,
             "n_tokens is not the length of response_token_ids", ["n_tokens"]),
            (df.n_tokens > df.max_new_tokens, "n_tokens above max_new_tokens",
             ["n_tokens", "max_new_tokens"])],
        "switch_check": [
            (df.n_switched > df.n_tokens, "n_switched above n_tokens",
             ["n_switched", "n_tokens"]),
            (~(np.abs(df.switch_share - share) <= 1e-9), "switch_share != n_switched / n_tokens",
             ["switch_share", "n_switched", "n_tokens"]),
            ((df.rule == "none") & (df.n_switched != 0), "rule `none` switched a token",
             ["n_switched"]),
            ((df.rule == "all") & (df.n_switched != df.n_tokens),
             "rule `all` left a token unswitched", ["n_switched", "n_tokens"])],
        "model_check": [
            (~np.where(df.direction == "forward", forward, backward),
             "primary/intervention models are not the pair's in this direction",
             ["direction", "pair", "primary_model", "intervention_model"])],
    })
    df = df.assign(sample_id_check=sample_id_check(df, (*CELL, "prompt_id")))
    # every cell asks every prompt: the union of the cells' prompts, per cell
    cells = df[CELL].drop_duplicates()
    expected = cells.merge(df[["prompt_id"]].drop_duplicates(), how="cross")
    problems = _missing(expected, df, [*CELL, "prompt_id"], "(cell, prompt) pairs")
    expectations += [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=CROSS_SAMPLES_KEY),
        _in("direction", directions), _in("rule", rules), _in("finish_reason", FINISH),
        _in("reward", [0, 1]), _in("sample_id_check", ["ok"]),
    ]
    return run_suite(df, "cross_samples", expectations, result_path,
                     ["part", *CROSS_SAMPLES_KEY], problems)


def check_cross_tokens(df: pd.DataFrame, samples: pd.DataFrame,
                       result_path: str | Path) -> dict:
    """Gate the published cross_tokens rows against their cross_samples rows: one row per
    position of every sampled response, its token and its source."""
    df = df.reset_index(drop=True)
    cols = [*CROSS_SAMPLES_KEY, "response_token_ids", "n_tokens", "n_switched", "primary_model",
            "intervention_model"]
    got = df[CROSS_TOKENS_KEY].merge(samples[cols], on=CROSS_SAMPLES_KEY, how="left")
    known = got.n_tokens.notna().values
    sampled = np.array([ids[p] if isinstance(ids, list | np.ndarray) and 0 <= p < len(ids)
                        else -1 for ids, p in zip(got.response_token_ids, got.position,
                                                  strict=True)])
    source = np.where(df.is_switched, got.intervention_model, got.primary_model)
    df = df.assign(n_tokens=got.n_tokens.values)
    df, expectations = _checks(df, {
        "bounds_check": inv.bound_rules(df, CROSS_TOKENS.required, [
            ("js", 0.0, LN2 + TOL), ("entropy_primary", 0.0, inv.BOUND),
            ("entropy_intervention", 0.0, inv.BOUND), ("logprob_primary", -inv.BOUND, 0.0),
            ("logprob_intervention", -inv.BOUND, 0.0), ("delta_top", 0.0, inv.BOUND),
            ("token_id", 0, None), ("position", 0, None)]),
        "samples_check": [
            (~known, "no such response in cross_samples", CROSS_SAMPLES_KEY[-2:]),
            (known & (sampled != df.token_id.values),
             "token_id differs from the response's response_token_ids", ["token_id"]),
            (known & (source != df.source_model.values),
             "source_model is not the model is_switched says", ["source_model", "is_switched"])],
        "text_check": inv.text_rules(df, None),
    })
    df = df.assign(response_check=np.where(
        known, response_check(df.assign(n_tokens=df.n_tokens.fillna(-1).astype(int)),
                              CROSS_SAMPLES_KEY), "ok"))
    switched = df.groupby(CROSS_SAMPLES_KEY).is_switched.sum().rename("found").reset_index()
    count = samples[[*CROSS_SAMPLES_KEY, "n_switched"]].merge(switched, on=CROSS_SAMPLES_KEY)
    wrong = count[count.found != count.n_switched]
    problems = _missing(samples, df, CROSS_SAMPLES_KEY, "sampled responses with no token rows")
    if len(wrong):
        r = wrong.iloc[0]
        problems.append(f"{len(wrong)} responses whose switched tokens differ from n_switched; "
                        f"e.g. {'/'.join(str(r[k]) for k in CROSS_SAMPLES_KEY)}: "
                        f"{r.found} rows switched, n_switched {r.n_switched}")
    expectations += [gxe.ExpectCompoundColumnsToBeUnique(column_list=CROSS_TOKENS_KEY),
                     _in("response_check", ["ok"])]
    return run_suite(df, "cross_tokens", expectations, result_path,
                     ["part", *CROSS_TOKENS_KEY], problems)


# --- measured decisiveness ------------------------------------------------------------------

SEQUENTIAL = ("decided", "capped", "no_streams")  # stopped sequential rollouts (stratified)
# exhaustive: all | response (N random positions); stratified: rlvr.decisive.design's
STRATA = ("all", "response", "js", "entropy", "uniform", "bound")


def check_decisiveness(df: pd.DataFrame, samples: pd.DataFrame, expected: pd.DataFrame,
                       rollouts: int, max_rollouts: int, name: str,
                       result_path: str | Path) -> dict:
    """Gate one generator's decisiveness rows: one row per position of each measured response
    (`expected`: prompt_id, sample_id, position), each agreeing with its sampled response, and
    each as its status says: `fixed` (the exhaustive design) holds shares of `rollouts`
    rollouts inside their intervals; `decided` / `capped` / `no_streams` (stratified) a delta
    interval from at most `max_rollouts` diverging rollouts; `bound` only the delta bound;
    `unsampled` nothing."""
    df = df.reset_index(drop=True)
    keys = ["prompt_id", "sample_id"]
    cols = [*keys, "response_token_ids", "n_tokens", "reward"]
    got = df[[*keys, "position"]].merge(samples[cols].rename(columns={
        "n_tokens": "sampled_n", "reward": "sampled_reward"}), on=keys, how="left")
    known = got.sampled_n.notna().values
    sampled = np.array([ids[p] if isinstance(ids, list | np.ndarray) and 0 <= p < len(ids)
                        else -1 for ids, p in zip(got.response_token_ids, got.position,
                                                  strict=True)])
    status, n = df.status.values, df.n_rollouts.astype(np.float64)
    fixed, sequential = status == "fixed", np.isin(status, SEQUENTIAL)
    measured_values = fixed | (sequential & (df.n_resampled_other > 0).values)

    def shares(c: str) -> np.ndarray:  # fixed rows: a whole number of the n rollouts
        return np.asarray(fixed & (np.abs(df[c] * n - np.round(df[c] * n)) > 1e-3 * n))

    def null(c: str) -> np.ndarray:
        return df[c].isna().values

    marked = expected.assign(_expected=True)
    measured = df[[*keys, "position"]].merge(marked, on=[*keys, "position"], how="left")
    deltas = ["delta_value", "delta_low", "delta_high"]
    checks = {
        "bounds_check": inv.bound_rules(df, DECISIVENESS.required, [
            ("position", 0, None), ("n_tokens", 1, None), ("prob_token", 0.0, 1.0),
            ("inclusion_prob", 1e-12, 1.0), *[(c, 0.0, 1.0) for c in DECISIVE_VALUES],
            *[(c, -1.0, 1.0) for c in deltas], ("n_resampled_other", 0, None)]),
        "status_check": [
            (fixed & (n != rollouts), f"a fixed row without {rollouts} rollouts",
             ["n_rollouts"]),
            # sequential: n_rollouts counts the streams scanned (no bound), of which at most
            # max_rollouts diverging ones are rolled out (n_resampled_other)
            (sequential & (n < 1), "a sequential row without a scanned stream", ["n_rollouts"]),
            (sequential & (df.n_resampled_other.values > max_rollouts),
             f"a sequential row with more than {max_rollouts} diverging rollouts",
             ["n_resampled_other"]),
            (~(fixed | sequential) & (n != 0), "an unmeasured row with rollouts",
             ["n_rollouts"]),
            (df.n_resampled_other.values > n, "more diverging rollouts than rollouts",
             ["n_resampled_other", "n_rollouts"]),
            (np.logical_or.reduce([measured_values & null(c) for c in DECISIVE_VALUES]),
             "a measured value is null", DECISIVE_VALUES),
            (np.logical_or.reduce([(fixed | sequential) & null(c) for c in deltas]),
             "a measured delta is null", deltas),
            (np.logical_or.reduce([~measured_values & ~null(c) for c in DECISIVE_VALUES]),
             "an unmeasured row holds a value", DECISIVE_VALUES),
            ((status == "bound") & (null("delta_low") | null("delta_high")),
             "a bound row without its delta bound", ["delta_low", "delta_high"]),
            ((status == "unsampled") & ~(null("delta_value") & null("delta_low")
                                         & null("delta_high")),
             "an unsampled row holds a delta", deltas)],
        "value_check": [
            (shares("value_before") | shares("value_after"),
             "a value is not a share of its rollouts", ["value_before", "value_after"]),
            (fixed & ~(np.abs(df.delta_value - (df.value_after - df.value_before)) <= 1e-5),
             "delta_value != value_after - value_before",
             ["delta_value", "value_after", "value_before"]),
            *[((df[f"{v}_low"] > df[v] + TOL) | (df[v] > df[f"{v}_high"] + TOL),
               f"{v} outside its interval", [f"{v}_low", v, f"{v}_high"])
              for v in ("value_before", "value_after")],
            (df.delta_low > df.delta_high + TOL, "delta_low above delta_high",
             ["delta_low", "delta_high"])],
        "samples_check": [
            (~known, "no such response in the samples table", keys),
            (known & (df.position >= got.sampled_n), "position past the response's end",
             ["position", "n_tokens"]),
            (known & (sampled != df.token_id.values) & (df.position < got.sampled_n),
             "token_id differs from the sampled response_token_ids", ["token_id"]),
            (known & (got.sampled_n.values != df.n_tokens.values),
             "n_tokens differs from the samples table", ["n_tokens"]),
            (known & (got.sampled_reward.values != df.reward.values),
             "reward differs from the samples table", ["reward"]),
            (measured._expected.isna().values, "not a position of a measured response",
             ["position"])],
    }
    df, expectations = _checks(df, checks)
    # every position of every measured response, once (the design's population)
    df = df.assign(response_check=np.where(known, response_check(df, keys), "ok"))
    expectations.append(_in("response_check", ["ok"]))
    problems = _missing(expected, df, [*keys, "position"], "positions")
    expectations += [gxe.ExpectCompoundColumnsToBeUnique(column_list=DECISIVE_KEY),
                     _in("reward", [0, 1]), _in("status", ["fixed", "bound", "unsampled",
                                                           *SEQUENTIAL]),
                     _in("stratum", STRATA)]
    return run_suite(df, name, expectations, result_path, ["part", *DECISIVE_KEY], problems)


# --- the weighted grid ----------------------------------------------------------------------

@dataclass(frozen=True)
class GridShape:
    """What the weighted grid's logs must hold: its variants (grid order, baseline first),
    seeds 0..seeds-1, training steps 1..steps, evaluations every `every`, at the last step and
    (`at_start`) at 0."""

    variants: tuple[str, ...]
    seeds: int
    steps: int
    every: int
    at_start: bool = True

    @property
    def eval_steps(self) -> list[int]:
        return sorted({self.steps, *range(self.every, self.steps + 1, self.every)}
                      | ({0} if self.at_start else set()))


def check_training(df: pd.DataFrame, grid: GridShape, runs: Sequence[tuple[str, int]],
                   name: str, result_path: str | Path | None) -> dict:
    """Gate training-log rows (one run's file, or the union of `runs`): keys once each, every
    run's evaluations, training steps and totals present, shares in [0, 1]."""
    df = df.reset_index(drop=True)
    share = df.metric.isin(SHARES)
    finite = df.metric.str.startswith("eval_") | df.metric.isin(["train_reward_mean",
                                                                  "run_seconds"])
    df, expectations = _checks(df, {
        "bounds_check": inv.bound_rules(df, TRAINING.required, [
            ("step", 0, grid.steps), ("seed", 0, grid.seeds - 1)]),
        "value_check": [
            (finite & ~np.isfinite(df.value.astype(float)), "value is not a finite number",
             ["value"]),
            (share & ~df.value.between(0.0, 1.0), "a share outside [0, 1]", ["value"])],
    })
    expected = pd.DataFrame(
        [(v, s, step, "eval_accuracy") for v, s in runs for step in grid.eval_steps]
        + [(v, s, step, "train_reward_mean") for v, s in runs
           for step in range(1, grid.steps + 1)]
        + [(v, s, grid.steps, "run_seconds") for v, s in runs], columns=TRAINING_KEY)
    problems = _missing(expected, df, TRAINING_KEY, "(run, step, metric) rows")
    expectations += [gxe.ExpectCompoundColumnsToBeUnique(column_list=TRAINING_KEY),
                     _in("variant", grid.variants)]
    return run_suite(df, name, expectations, result_path, TRAINING_KEY, problems)


def check_weighted_results(df: pd.DataFrame, grid: GridShape, result_path: str | Path) -> dict:
    """Gate the results table: one row per variant in grid order, every seed's final
    accuracy, differences that are the means' differences inside their intervals."""
    df = df.reset_index(drop=True)
    base = df.loc[df.variant == grid.variants[0], "mean"]
    base_mean = float(base.iloc[0]) if len(base) else np.nan
    other = df.variant != grid.variants[0]
    has_ci = other & df.diff_lo.notna() & df.diff_hi.notna()
    df, expectations = _checks(df, {
        "bounds_check": inv.bound_rules(df, RESULTS_REQUIRED, [
            ("mean", 0.0, 1.0), ("std", 0.0, None), ("p_value", 0.0, 1.0),
            ("paired_p_value", 0.0, 1.0)]),
        "diff_check": [
            (other & ~(np.abs(df["diff"] - (df["mean"] - base_mean)) <= 1e-9),
             "diff is not mean - the baseline's mean", ["diff", "mean"]),
            (~other & df["diff"].notna(), "the baseline has a difference", ["diff"]),
            (has_ci & ((df.diff_lo > df["diff"] + TOL) | (df["diff"] > df.diff_hi + TOL)),
             "diff outside [diff_lo, diff_hi]", ["diff_lo", "diff", "diff_hi"])],
    })
    problems = []
    if df.variant.tolist() != list(grid.variants):
        problems.append(f"variants {df.variant.tolist()} are not the grid's "
                        f"{list(grid.variants)} (in grid order, baseline first)")
    expectations += [gxe.ExpectColumnValuesToBeUnique(column="variant"),
                     _in("n_seeds", [grid.seeds]), _in("step", [grid.steps])]
    return run_suite(df, "weighted_results", expectations, result_path, ["variant"], problems)
