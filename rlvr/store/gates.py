"""Data-quality gates (Great Expectations 1.x) on the samples and token tables.

Each gate builds an ephemeral GX context, validates one dataframe against a suite, saves the
validation result as JSON, and raises `GateFailed` with one line per failed check, each naming
the part file, the row and its values. Checks GX has no single expectation for (contiguous
positions per response, the math tying a token row's columns together, agreement with the
samples table and the tokenizer: `rlvr.store.invariants`) are computed into helper columns that
read `ok` on good rows and describe the problem on bad ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from transformers import PreTrainedTokenizerBase

from rlvr.store import invariants as inv
from rlvr.store.atomic import write_json
from rlvr.store.registry import SAMPLES, TOKENS
from rlvr.testbed.graders import ROLES
from rlvr.tokens.divergence import LN2


class GateFailed(ValueError):
    """A quality gate found bad rows; the message has one line per failed check. A ValueError:
    bad data is bad input to the stage that reads it (`rlvr.config.is_expected`)."""


def response_check(df: pd.DataFrame, keys: list[str], named: int = 2) -> np.ndarray:
    """Per row: `ok`, or why its response (rows sharing `keys`) is not positions
    0..n_tokens-1 exactly once each (with one reward, where rows carry one); the message names
    the last `named` keys (e.g. prompt and sample)."""
    g = df.groupby(keys, sort=False, dropna=False)
    agg = pd.DataFrame({
        "rows": g["position"].size(), "lo": g["position"].min(), "hi": g["position"].max(),
        "distinct": g["position"].nunique(), "n_lo": g["n_tokens"].min(),
        "n_hi": g["n_tokens"].max(),
        "rewards": g["reward"].nunique(dropna=False) if "reward" in df else 1,
    })
    contiguous = (agg.lo == 0) & (agg.hi == agg.rows - 1) & (agg.distinct == agg.rows)
    consistent = (agg.n_lo == agg.n_hi) & (agg.n_hi == agg.rows)
    msg = pd.Series("ok", index=agg.index, dtype=object)
    for key, row in agg[~(contiguous & consistent) | (agg.rewards > 1)].iterrows():
        where = "/".join(map(str, np.atleast_1d(key)[-named:]))
        if row.rewards > 1:
            msg[key] = f"{where}: {row.rewards} different rewards in one response"
        else:
            msg[key] = (f"{where}: {row.rows} rows at positions {row.lo}..{row.hi} "
                        f"({row.distinct} distinct) with n_tokens {row.n_lo}..{row.n_hi}; a "
                        "response has positions 0..n_tokens-1, once each")
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


def _where(index: dict) -> str:
    """`part prompt/sample position N` (or the key columns present) of one GX row index."""
    part = f"{index['part']} " if "part" in index else ""
    rest = [f"{index[k]}" for k in inv.NAMING if k in index]
    at = "".join(f" {k} {index[k]}" for k in inv.suffix_columns(index))
    return f"{part}{'/'.join(rest)}{at}"


def _failure_line(r, n: int) -> str:
    """One line for one failed expectation: what, how many rows, and the first offending row."""
    kind, kw, res = r.expectation_config.type, r.expectation_config.kwargs, r.result
    count = res.get("unexpected_count", "?")
    where = [_where(i) for i in res.get("partial_unexpected_index_list") or []]
    values = res.get("partial_unexpected_list") or []
    column = kw.get("column")
    if kind == "expect_compound_columns_to_be_unique":
        return f"duplicate key {kw['column_list']}: {count} of {n} rows; e.g. {where[0]}"
    if kind == "expect_column_values_to_be_in_set" and kw["value_set"] == ["ok"]:
        return f"{column}: {count} of {n} rows fail; e.g. {values[0]}"
    what = {"expect_column_values_to_not_be_null": "is null",
            "expect_column_values_to_be_between":
                f"outside [{kw.get('min_value')}, {kw.get('max_value')}]",
            "expect_column_values_to_be_in_set": f"not in {kw.get('value_set')}",
            "expect_column_values_to_be_unique": "is not unique"}.get(kind, kind)
    example = f"; e.g. {where[0]}: {values[0]!r}" if where and values else ""
    return f"{column} {what}: {count} of {n} rows{example}"


def run_suite(df: pd.DataFrame, name: str, expectations: list, result_path: str | Path | None,
              index_columns: list[str], problems: list[str] | None = None) -> dict:
    """Validate `df`, save the result JSON (unless `result_path` is None), and raise GateFailed
    listing every failure (`problems`: table-level findings computed outside GX, saved and
    reported with them)."""
    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_pandas(name).add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe("all"))
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result = validation.run(batch_parameters={"dataframe": df}, result_format={
        "result_format": "SUMMARY",
        "unexpected_index_column_names": [c for c in index_columns if c in df.columns]})
    report = _without_run_stamps(result.to_json_dict())
    problems = list(problems or [])
    if problems:
        report["success"], report["rlvr_problems"] = False, problems
    if result_path is not None:
        write_json(report, result_path)
    failures = [_failure_line(r, len(df)) for r in result.results if not r.success] + problems
    where = "" if result_path is None else f" ({result_path})"
    if len(failures) == 1:
        raise GateFailed(f"quality gate `{name}` failed{where}: {failures[0]}")
    if failures:
        raise GateFailed(f"quality gate `{name}` failed {len(failures)} checks{where}:\n"
                         + "\n".join(f"- {f}" for f in failures))
    return {"rows": len(df), "expectations": len(result.results), "result": str(result_path)}


def sample_id_check(df: pd.DataFrame, keys: tuple[str, ...] = ("prompt_id",)) -> np.ndarray:
    """Per row: `ok`, or why its prompt's sample ids (rows sharing `keys`) are not 0..n-1
    with the n of most prompts (a whole response dropped or added)."""
    g = df.groupby(list(keys), sort=False)["sample_id"]
    agg = pd.DataFrame({"rows": g.size(), "lo": g.min(), "hi": g.max()})
    n = agg.rows.mode().max() if len(agg) else 0
    bad = (agg.rows != n) | (agg.lo != 0) | (agg.hi != agg.rows - 1)
    msg = pd.Series("ok", index=agg.index, dtype=object)
    for key, row in agg[bad].iterrows():
        shown = "/".join(map(str, np.atleast_1d(key)))
        msg[key] = (f"{shown}: {row.rows} responses with sample ids {row.lo}..{row.hi}; most "
                    f"prompts have {n} (0..{n - 1})")
    return df[list(keys)].merge(msg.rename("check").reset_index(), on=list(keys),
                                how="left")["check"].values


def check_samples(df: pd.DataFrame, name: str, result_path: str | Path) -> dict:
    """Gate the samples table (one model's rows or all of them); returns a small summary."""
    df = df.reset_index(drop=True)  # GX names offending rows by position
    df = df.assign(
        length_check=np.where(
            (df.response_token_ids.map(len) == df.n_tokens)
            & (df.sampling_logprobs.map(len) == df.n_tokens), "ok", "n_tokens differs from the "
            "lengths of response_token_ids / sampling_logprobs"),
        max_sampling_logprob=df.sampling_logprobs.map(lambda x: max(x, default=0.0)),
    )
    keys = list(SAMPLES.keys)
    if df.model.nunique() <= 1:  # one model: every prompt has the same number of responses
        df = df.assign(sample_id_check=sample_id_check(df))
    expectations = [
        # the registry's never-null columns, and reward: a samples row is always graded
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in [
            *SAMPLES.required, "reward", "max_sampling_logprob"]],
        gxe.ExpectCompoundColumnsToBeUnique(column_list=keys),
        gxe.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=1),
        gxe.ExpectColumnValuesToBeInSet(column="finish_reason", value_set=["eos", "length"]),
        gxe.ExpectColumnValuesToBeInSet(column="reward", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeBetween(column="max_sampling_logprob", max_value=0.0),
        *[gxe.ExpectColumnValuesToBeInSet(column=c, value_set=["ok"])
          for c in df.columns if c.endswith("_check")],
    ]
    return run_suite(df, name, expectations, result_path, ["part", *keys])


def check_tokens(
    df: pd.DataFrame, name: str, vocab_size: int, result_path: str | Path,
    samples: pd.DataFrame | None = None, tokenizer: PreTrainedTokenizerBase | None = None,
) -> dict:
    """Gate token-table rows (one or more whole responses); returns a small summary.

    With `samples` (the generator's rows of the samples table) the rows must match it: the same
    responses, token ids, lengths and rewards. With `tokenizer`, `token_text` must be its text
    of `token_id`. Roles must be the labeller's or, when labelling is off, null on every row.
    """
    keys = list(TOKENS.keys)
    df = df.reset_index(drop=True)  # GX names offending rows by position
    log_v = math.log(vocab_size)
    tol = 1e-6  # float32 rounding at the bounds is not an error
    bounds = [
        ("js", 0.0, LN2 + tol), ("js_top_p", 0.0, LN2 + tol),
        ("entropy_base", 0.0, log_v + tol), ("entropy_tuned", 0.0, log_v + tol),
        ("logprob_base", -inv.BOUND, 0.0), ("logprob_tuned", -inv.BOUND, 0.0),
        ("kl_base_tuned", 0.0, inv.BOUND), ("kl_tuned_base", 0.0, inv.BOUND),
        ("rank_base", 1, vocab_size), ("rank_tuned", 1, vocab_size),
        ("rank_in_base_of_top1_tuned", 1, vocab_size),
        ("rank_in_tuned_of_top1_base", 1, vocab_size), ("prob_base_of_top1_tuned", 0.0, 1.0),
        ("top1_base", 0, vocab_size - 1), ("top1_tuned", 0, vocab_size - 1),
        ("token_id", 0, vocab_size - 1), ("position", 0, None), ("n_tokens", 1, None),
        *[(f"topk_overlap_{k}", 0.0, 1.0) for k in range(1, 6)],
    ]
    labelled = df.role.notna().any()  # the labeller ran: every row has a role
    required = [*TOKENS.required, "reward", *(["role"] if labelled else [])]
    # one helper column for all bounds: GX's cost grows with the number of expectations
    checks = {"bounds_check": inv.bound_rules(df, required, bounds),
              "delta_check": inv.delta_rules(df), "divergence_check": inv.divergence_rules(df),
              "rank_check": inv.rank_rules(df), "overlap_check": inv.overlap_rules(df),
              "text_check": inv.text_rules(df, tokenizer)}
    problems = []
    if samples is not None:
        checks["samples_check"], problems = inv.sample_rules(df, samples)
    df = df.assign(response_check=response_check(df, keys[:-1]),
                   **{c: inv.verdicts(df, rules) for c, rules in checks.items()})
    expectations = [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=keys),
        gxe.ExpectColumnValuesToBeInSet(column="reward", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeInSet(column="role", value_set=list(ROLES)),
        *[gxe.ExpectColumnValuesToBeInSet(column=c, value_set=["ok"])
          for c in ["response_check", *checks]],
    ]
    return run_suite(df, name, expectations, result_path, ["part", *keys], problems)


def read_files(parts: Sequence[str | Path], columns: list[str] | None = None) -> pd.DataFrame:
    """Parquet files as one dataframe, with each file's name in `part`."""
    assert parts, "no part files"
    return pd.concat([pq.read_table(p, columns=columns).to_pandas().assign(part=Path(p).name)
                      for p in parts], ignore_index=True)


def read_parts(directory: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Every part file of one partition as one dataframe, with the file's name in `part`."""
    parts = sorted(Path(directory).glob("part-*.parquet"))
    assert parts, f"no part files in {directory}"
    return read_files(parts, columns)


def gate_samples_dir(directory: str | Path, result_path: str | Path) -> dict:
    """Gate every part file of one samples partition (one model)."""
    model = Path(directory).name.removeprefix("model=")
    return check_samples(read_parts(directory), f"samples_{model}", result_path)


def gate_tokens_dir(
    directory: str | Path, vocab_size: int, result_path: str | Path,
    samples_dir: str | Path | None = None, tokenizer: PreTrainedTokenizerBase | None = None,
) -> dict:
    """Gate every part file of one token partition (one pair and generator), against the
    generator's samples partition (`samples_dir`, data/samples/model=<generator>) and the
    pair's tokenizer when given."""
    samples = None if samples_dir is None else SAMPLES.read_files(
        SAMPLES.partition_files(samples_dir),
        ["prompt_id", "sample_id", "response_token_ids", "n_tokens", "reward"]).to_pandas()
    pair, generator = (p.split("=", 1)[-1] for p in Path(directory).parts[-2:])
    name = f"tokens_{pair}_{generator}"
    return check_tokens(read_parts(directory), name, vocab_size, result_path, samples, tokenizer)
