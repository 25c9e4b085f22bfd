"""The token table audited against the models: a seeded sample of rows recomputed in float64.

The gates (`rlvr.store.gates`) check that a token row is consistent with itself and with the
samples table; no bound can see a value that is wrong but plausible (a JS doubled from 0.1 to
0.2). The audit recomputes `AuditParams.rows` rows of each (pair, generator) partition from the
two models themselves, independently of the scorer: one forward per row over exactly that
row's prefix (prompt + response so far: no batching, padding, KV cache or shared prompt), the
model cast to float64, and every statistic from the float64 logits with numpy. A value further
from the recomputation than the tolerance of the pair's least precise dtype (`TOLERANCES`: the
scorer's own forward runs in that dtype) fails, naming the row. Cost: 2 x `rows` forwards per
partition, plus one float64 copy of each model in memory (8 bytes per parameter) while it runs.

`audit_partition` is the score stage's last gate before its table is marked complete;
`rlvr audit` (rlvr.cli) runs it over an existing table, e.g. one a user brings.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rlvr.layout import Layout
from rlvr.models.checks import check_model, check_pair
from rlvr.models.loading import load_spec
from rlvr.models.specs import ModelsParams, ModelSpec, resolve
from rlvr.store.atomic import write_json
from rlvr.store.gates import GateFailed, read_parts
from rlvr.store.registry import SAMPLES
from rlvr.store.tables import samples_dir
from rlvr.tokens.scorer import AuditParams

KEY = ["prompt_id", "sample_id", "position"]


@dataclass(frozen=True)
class Tolerance:
    """How far a table value may lie from its float64 recomputation: nats for log-probs,
    entropies and KLs (and probabilities), JS on its own scale, logits for ranks and top-1s."""

    logprob: float
    js: float
    logit: float


# by the pair's least precise dtype. fp32: the scorer against float64 forwards of SmolLM2-135M
# differs by <= 2e-4 nats and 2e-6 in JS (tests/smollm2); bf16 forwards round activations to
# 8 bits of mantissa: 0.35 nats and 0.023 in JS seen on one processor (issue 21)
TOLERANCES = {
    "fp32": Tolerance(logprob=2e-3, js=1e-4, logit=2e-3),
    "fp16": Tolerance(logprob=0.1, js=0.01, logit=0.05),
    "bf16": Tolerance(logprob=0.75, js=0.06, logit=0.5),
}
LOGPROBS = ["logprob_base", "logprob_tuned", "delta_logprob", "entropy_base", "entropy_tuned",
            "kl_base_tuned", "kl_tuned_base", "prob_base_of_top1_tuned"]
RANKS = ["rank_base", "rank_tuned", "rank_in_base_of_top1_tuned", "rank_in_tuned_of_top1_base"]
AUDITED = [*LOGPROBS, "js", *RANKS, "top1_base", "top1_tuned"]


def tolerance_of(*dtypes: str) -> Tolerance:
    """The loosest tolerance among the models' dtypes."""
    order = list(TOLERANCES)
    return TOLERANCES[max(dtypes, key=order.index)]


def pick_rows(table: pd.DataFrame, n: int, seed: int, name: str) -> pd.DataFrame:
    """`n` rows of `table`, drawn with a stream of (seed, name) from the rows in key order, so
    the draw depends on neither file order nor sharding."""
    ordered = table.sort_values(KEY, kind="stable").reset_index(drop=True)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    chosen = np.sort(rng.choice(len(ordered), size=min(n, len(ordered)), replace=False))
    return ordered.iloc[chosen].reset_index(drop=True)


@torch.no_grad()
def last_logits(spec: ModelSpec, prefixes: Sequence[Sequence[int]]) -> np.ndarray:
    """float64 next-token logits (R, V) after each prefix: the model cast to float64, one
    forward per prefix over exactly its ids."""
    model, _ = load_spec(spec)
    model = model.to(torch.float64)
    out = []
    for ids in prefixes:
        x = torch.tensor([list(ids)], device=model.device)
        out.append(model(input_ids=x).logits[0, -1].double().cpu().numpy())
    del model
    return np.stack(out)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    top = x.max(-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(-1, keepdims=True))


def _plogp_ratio(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """sum_v p_v (log p_v - log q_v) over p_v > 0, rows (R, V) -> (R,)."""
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):  # 0 * -inf where a model rules a token out
        return np.where(p > 0, p * (lp - np.where(p > 0, lq, 0.0)), 0.0).sum(-1)


def reference(xa: np.ndarray, xb: np.ndarray, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Every audited statistic in float64 from both models' logits (R, V) and the realised
    tokens (R,); ranks and top-1s come with the float64 logits for the tie band."""
    la, lb = _log_softmax(xa), _log_softmax(xb)
    lm = np.logaddexp(la, lb) - np.log(2.0)
    rows = np.arange(len(tokens))
    return {
        "logprob_base": la[rows, tokens], "logprob_tuned": lb[rows, tokens],
        "delta_logprob": lb[rows, tokens] - la[rows, tokens],
        "entropy_base": -_plogp_ratio(la, np.zeros_like(la)),
        "entropy_tuned": -_plogp_ratio(lb, np.zeros_like(lb)),
        "kl_base_tuned": _plogp_ratio(la, lb), "kl_tuned_base": _plogp_ratio(lb, la),
        "js": 0.5 * _plogp_ratio(la, lm) + 0.5 * _plogp_ratio(lb, lm),
        "log_base": la, "logits_base": xa, "logits_tuned": xb,
    }


def _rank_band(x: np.ndarray, v: int, eps: float) -> tuple[int, int]:
    """The ranks token v may have when logits are known to within eps: ties broken either way."""
    return 1 + int((x > x[v] + eps).sum()), int((x >= x[v] - eps).sum())


def compare(rows: pd.DataFrame, ref: dict[str, np.ndarray], tol: Tolerance
            ) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(column, bad rows, recomputed values, tolerance) for every audited column."""
    out = []
    for column in LOGPROBS:
        table = rows[column].to_numpy(np.float64)
        if column == "prob_base_of_top1_tuned":  # the base probability of the table's top-1
            want = np.exp(ref["log_base"][np.arange(len(rows)), rows.top1_tuned.to_numpy()])
        else:
            want = ref[column]
        out.append((column, ~(np.abs(table - want) <= tol.logprob), want, tol.logprob))
    table = rows.js.to_numpy(np.float64)
    out.append(("js", ~(np.abs(table - ref["js"]) <= tol.js), ref["js"], tol.js))
    sides = {"base": ref["logits_base"], "tuned": ref["logits_tuned"]}
    for column, side, token in (("rank_base", "base", "token_id"),
                                ("rank_tuned", "tuned", "token_id"),
                                ("rank_in_base_of_top1_tuned", "base", "top1_tuned"),
                                ("rank_in_tuned_of_top1_base", "tuned", "top1_base")):
        bands = [_rank_band(x, int(v), tol.logit) for x, v in zip(sides[side], rows[token],
                                                                  strict=True)]
        got = rows[column].to_numpy()
        bad = np.array([not lo <= r <= hi for r, (lo, hi) in zip(got, bands, strict=True)])
        out.append((column, bad, np.array([lo for lo, _ in bands], dtype=float), tol.logit))
    for side, x in sides.items():
        top = rows[f"top1_{side}"].to_numpy()
        best = x.max(-1)
        bad = x[np.arange(len(rows)), top] < best - tol.logit
        out.append((f"top1_{side}", bad, x.argmax(-1).astype(float), tol.logit))
    return out


def audit_rows(rows: pd.DataFrame, samples: pd.DataFrame, base: ModelSpec, tuned: ModelSpec
               ) -> tuple[dict[str, np.ndarray], Tolerance]:
    """The float64 recomputation of `rows` (token rows) from their prefixes in `samples` (the
    generator's samples: prompt and response ids) under both models."""
    ids = samples.set_index(["prompt_id", "sample_id"])
    prefixes = []
    for r in rows.itertuples():
        sample = ids.loc[(r.prompt_id, r.sample_id)]
        prefixes.append([*sample.prompt_token_ids, *sample.response_token_ids[: r.position]])
    xa = last_logits(base, prefixes)
    xb = last_logits(tuned, prefixes)
    return reference(xa, xb, rows.token_id.to_numpy()), tolerance_of(base.dtype, tuned.dtype)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def audit_partition(directory: str | Path, samples_dir: str | Path, base: ModelSpec,
                    tuned: ModelSpec, params: AuditParams, name: str,
                    result_path: str | Path | None) -> dict:
    """Audit one (pair, generator) partition of the token table (see the module docstring);
    saves what it compared (unless `result_path` is None) and raises GateFailed with one line
    per column off, naming its first row. Returns a small summary."""
    if params.rows == 0:
        return {"rows": 0}
    start = time.perf_counter()
    table = read_parts(directory, ["prompt_id", "sample_id", "position", "token_id", *AUDITED])
    rows = pick_rows(table, params.rows, params.seed, name)
    samples = SAMPLES.read_files(SAMPLES.partition_files(samples_dir), [
        "prompt_id", "sample_id", "prompt_token_ids", "response_token_ids"]).to_pandas()
    ref, tol = audit_rows(rows, samples, base, tuned)
    failures, report = [], []
    for column, bad, want, limit in compare(rows, ref, tol):
        for i in np.flatnonzero(bad)[:1]:
            r = rows.iloc[i]
            failures.append(
                f"{column}: {int(bad.sum())} of {len(rows)} audited rows off by more than "
                f"{limit:g} ({base.dtype}/{tuned.dtype}); e.g. {r.part} {r.prompt_id}/"
                f"{r.sample_id} position {r.position}: {_fmt(r[column])} in the table, "
                f"{_fmt(want[i])} recomputed in float64")
        report.append({"column": column, "tolerance": limit, "off": int(bad.sum())})
    seconds = time.perf_counter() - start
    if result_path is not None:
        write_json({"name": name, "dtypes": [base.dtype, tuned.dtype],
                    "tolerance": asdict(tol), "params": asdict(params),
                    "rows": [[r.part, r.prompt_id, int(r.sample_id), int(r.position)]
                             for r in rows.itertuples()], "columns": report,
                    "success": not failures}, result_path)
    where = "" if result_path is None else f" ({result_path})"
    if len(failures) == 1:
        raise GateFailed(f"audit of `{name}` failed{where}: {failures[0]}")
    if failures:
        raise GateFailed(f"audit of `{name}` failed {len(failures)} checks{where}:\n"
                         + "\n".join(f"- {f}" for f in failures))
    return {"rows": len(rows), "seconds": round(seconds, 2), "dtypes": [base.dtype, tuned.dtype]}


def audit_table(layout: Layout, models: ModelsParams, params: AuditParams,
                pairs: Sequence[str] = ()) -> list[str]:
    """Audit every (pair, generator) partition of the token table under `layout` (or those of
    `pairs`), each against the models its pair names (resolved as the stages resolve them) and
    its generator's samples. Returns one line per partition that passed; raises GateFailed
    with the failures of every partition that did not."""
    lines, failed = [], []
    found = sorted(layout.tokens_dir.glob("pair=*/generator=*"))
    if not found:
        raise ValueError(f"no token partitions under {layout.tokens_dir} "
                         "(pair=<base>__<tuned>/generator=<base|tuned>/)")
    for directory in found:
        pair, generator = (p.split("=", 1)[1] for p in directory.parts[-2:])
        if pairs and pair not in pairs:
            continue
        names = pair.split("__", 1)
        if len(names) != 2 or generator not in ("base", "tuned"):
            raise ValueError(f"{directory}: not a token partition (pair=<base>__<tuned>/"
                             "generator=<base|tuned>)")
        base, tuned = (resolve(n, models, layout) for n in names)
        check_pair(check_model(base.spec), check_model(tuned.spec))
        source = samples_dir(layout.samples_dir, names[0 if generator == "base" else 1])
        if not any(source.glob("part-*.parquet")):
            raise ValueError(f"no samples at {source}: the audit recomputes rows from the "
                             "prompts and responses of the samples table")
        try:
            done = audit_partition(directory, source, base.spec, tuned.spec, params,
                                   f"tokens_{pair}_{generator}", None)
        except GateFailed as err:
            failed.append(str(err))
            continue
        lines.append(f"tokens {pair}/{generator}: {done['rows']} rows recomputed in float64 "
                     f"from {names[0]} and {names[1]} ({base.spec.dtype}/{tuned.spec.dtype}), "
                     f"all within tolerance ({done['seconds']} s)")
    if failed:
        raise GateFailed("\n".join(failed))
    return lines
