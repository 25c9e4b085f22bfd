"""Data-quality gates (Great Expectations 1.x) on the samples and token tables.

Each gate builds an ephemeral GX context, validates one dataframe against a suite, saves the
validation result as JSON, and raises `GateFailed` with a readable summary when an expectation
fails. Checks GX has no single expectation for (contiguous positions per response, `n_tokens`
consistent with the rows present) are computed here into a helper column that reads `ok` on good
rows and describes the problem on bad ones, so the failure summary shows the offending response.
"""

from __future__ import annotations

import math
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd

from rlvr.store.atomic import write_json
from rlvr.store.tables import KEYS, read_partition
from rlvr.tokens.divergence import LN2

TOKEN_FLOATS = ["logprob_base", "logprob_tuned", "delta_logprob", "entropy_base",
                "entropy_tuned", "js", "kl_base_tuned", "kl_tuned_base",
                "prob_base_of_top1_tuned", "js_top_p"] + [f"topk_overlap_{k}" for k in range(1, 6)]
TOKEN_INTS = ["position", "n_tokens", "token_id", "rank_base", "rank_tuned", "top1_base",
              "top1_tuned", "rank_in_base_of_top1_tuned", "rank_in_tuned_of_top1_base"]


class GateFailed(RuntimeError):
    """A quality gate found bad rows; the message lists each failed expectation."""


def _response_check(df: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Per row: `ok`, or why its response's positions are not 0..n_tokens-1 exactly once each."""
    g = df.groupby(keys, sort=False, dropna=False)
    agg = pd.DataFrame({
        "rows": g["position"].size(), "lo": g["position"].min(), "hi": g["position"].max(),
        "distinct": g["position"].nunique(), "n_lo": g["n_tokens"].min(),
        "n_hi": g["n_tokens"].max(),
    })
    contiguous = (agg.lo == 0) & (agg.hi == agg.rows - 1) & (agg.distinct == agg.rows)
    consistent = (agg.n_lo == agg.n_hi) & (agg.n_hi == agg.rows)
    msg = pd.Series("ok", index=agg.index, dtype=object)
    bad = ~(contiguous & consistent)
    for key, row in agg[bad].iterrows():
        name = "/".join(map(str, np.atleast_1d(key)))
        msg[key] = (f"{name}: {row.rows} rows, positions {row.lo}..{row.hi} "
                    f"({row.distinct} distinct), n_tokens {row.n_lo}..{row.n_hi}")
    return df[keys].merge(msg.rename("check").reset_index(), on=keys, how="left")["check"].values


def _without_run_stamps(report: dict) -> dict:
    """The validation result minus its ids and clock times, so a rerun on the same data writes
    the same bytes and DVC does not see a changed output."""
    report.pop("id", None)
    meta = report.get("meta", {})
    for key in ("run_id", "validation_id", "validation_time"):
        meta.pop(key, None)
    meta.get("batch_markers", {}).pop("ge_load_time", None)
    for result in report.get("results", []):
        result.get("expectation_config", {}).pop("id", None)
    return report


def _run(df: pd.DataFrame, name: str, expectations: list, result_path: str | Path) -> dict:
    """Validate `df`, save the result JSON, and raise GateFailed listing every failure."""
    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_pandas(name).add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe("all"))
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result = validation.run(batch_parameters={"dataframe": df})
    write_json(_without_run_stamps(result.to_json_dict()), result_path)
    failures = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        args = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}
        count = r.result.get("unexpected_count", "?")
        example = (r.result.get("partial_unexpected_list") or [r.result.get("observed_value")])[0]
        failures.append(f"- {cfg.type} {args}: {count} of {len(df)} rows fail; e.g. {example!r}")
    if failures:
        raise GateFailed(f"quality gate `{name}` failed ({result_path}):\n" + "\n".join(failures))
    return {"rows": len(df), "expectations": len(result.results), "result": str(result_path)}


def check_samples(df: pd.DataFrame, name: str, result_path: str | Path) -> dict:
    """Gate the samples table (one model's rows or all of them); returns a small summary."""
    df = df.assign(
        length_check=np.where(
            (df.response_token_ids.map(len) == df.n_tokens)
            & (df.sampling_logprobs.map(len) == df.n_tokens), "ok", "n_tokens differs from the "
            "lengths of response_token_ids / sampling_logprobs"),
        max_sampling_logprob=df.sampling_logprobs.map(lambda x: max(x, default=0.0)),
    )
    keys = KEYS["samples"]
    expectations = [
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in keys + [
            "prompt_token_ids", "response_token_ids", "n_tokens", "finish_reason", "reward",
            "max_sampling_logprob"]],
        gxe.ExpectCompoundColumnsToBeUnique(column_list=keys),
        gxe.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=1),
        gxe.ExpectColumnValuesToBeInSet(column="finish_reason", value_set=["eos", "length"]),
        gxe.ExpectColumnValuesToBeInSet(column="reward", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeBetween(column="max_sampling_logprob", max_value=0.0),
        gxe.ExpectColumnValuesToBeInSet(column="length_check", value_set=["ok"]),
    ]
    return _run(df, name, expectations, result_path)


def check_tokens(df: pd.DataFrame, name: str, vocab_size: int, result_path: str | Path) -> dict:
    """Gate token-table rows (one or more whole responses); returns a small summary."""
    keys = KEYS["tokens"]
    df = df.assign(response_check=_response_check(df, keys[:-1]))
    log_v = math.log(vocab_size)
    tol = 1e-6  # float32 rounding at the bounds is not an error
    between = [
        ("js", 0.0, LN2 + tol), ("js_top_p", 0.0, LN2 + tol),
        ("entropy_base", 0.0, log_v + tol), ("entropy_tuned", 0.0, log_v + tol),
        ("logprob_base", None, 0.0), ("logprob_tuned", None, 0.0),
        ("kl_base_tuned", 0.0, None), ("kl_tuned_base", 0.0, None),
        ("rank_base", 1, vocab_size), ("rank_tuned", 1, vocab_size),
        ("rank_in_base_of_top1_tuned", 1, vocab_size),
        ("rank_in_tuned_of_top1_base", 1, vocab_size), ("prob_base_of_top1_tuned", 0.0, 1.0),
        ("top1_base", 0, vocab_size - 1), ("top1_tuned", 0, vocab_size - 1),
        ("token_id", 0, vocab_size - 1), ("position", 0, None), ("n_tokens", 1, None),
        *[(f"topk_overlap_{k}", 0.0, 1.0) for k in range(1, 6)],
    ]
    expectations = [
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in keys + TOKEN_FLOATS + TOKEN_INTS],
        gxe.ExpectCompoundColumnsToBeUnique(column_list=keys),
        *[gxe.ExpectColumnValuesToBeBetween(column=c, min_value=lo, max_value=hi)
          for c, lo, hi in between],
        gxe.ExpectColumnValuesToBeInSet(column="reward", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeInSet(column="response_check", value_set=["ok"]),
    ]
    return _run(df, name, expectations, result_path)


def gate_samples_dir(directory: str | Path, result_path: str | Path) -> dict:
    """Gate every part file of one samples partition (one model)."""
    df = read_partition(directory).to_pandas()
    return check_samples(df, f"samples_{Path(directory).name}", result_path)


def gate_tokens_dir(directory: str | Path, vocab_size: int, result_path: str | Path) -> dict:
    """Gate every part file of one token partition (one pair and generator)."""
    df = read_partition(directory).to_pandas()
    name = f"tokens_{Path(directory).parent.name}_{Path(directory).name}"
    return check_tokens(df, name, vocab_size, result_path)
