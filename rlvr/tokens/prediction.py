"""Failure prediction: does a response's divergence say it will fail?

For each pair, generator and response-level summary of js (`agg_response_divergence.sql`: max,
mean, mean over the first N positions), the AUROC of the summary at ranking failed responses
(reward 0) above correct ones: P(score of a failed response > score of a correct one) + ½ P(tie),
the Mann-Whitney U statistic over n_failed x n_correct pairs. 0.5 is no signal.

Interval: a prompt-cluster bootstrap (responses to one prompt share its difficulty, so they
are not independent draws). Replicate b draws the group's prompts with replacement; a response
weighs its prompt's count, and the weighted AUROC is computed exactly from one sort:
sum over tie classes t of wf_b(t) (wc_b(<t) + wc_b(t) / 2) / (wf_b wc_b), with wf / wc the
weighted failed / correct counts. The three summaries of a group share their replicates.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
from scipy import sparse

SUMMARIES = ("max_js", "mean_js", "mean_js_first")
CHUNK = 100  # replicates per block: bounds memory at CHUNK x tie classes floats

PREDICTION_SCHEMA = pa.schema([
    ("pair", pa.string()), ("generator", pa.string()), ("summary", pa.string()),
    ("n_responses", pa.int64()), ("n_failed", pa.int64()), ("auroc", pa.float64()),
    ("auroc_low", pa.float64()), ("auroc_high", pa.float64()),
])


def weighted_auroc(scores: np.ndarray, failed: np.ndarray, prompts: np.ndarray,
                   weights: np.ndarray) -> np.ndarray:
    """AUROC of `scores` for `failed` under per-prompt weights, one value per weight row.

    scores: (N,) float; failed: (N,) bool; prompts: (N,) int in [0, P); weights: (B, P) counts
    (all ones: the plain AUROC). Returns (B,) float64; NaN where a replicate has no failed or no
    correct response.
    """
    distinct, tie = np.unique(scores, return_inverse=True)
    shape = (weights.shape[1], len(distinct))
    ones = np.ones(len(scores))

    def counts(mask: np.ndarray) -> sparse.csr_matrix:  # (P, T): responses per prompt and tie
        return sparse.csr_matrix((ones[mask], (prompts[mask], tie[mask])), shape=shape)

    fail, good = counts(failed), counts(~failed)
    out = np.empty(len(weights))
    for start in range(0, len(weights), CHUNK):
        w = sparse.csr_matrix(weights[start : start + CHUNK].astype(np.float64))
        wf, wc = (w @ fail).toarray(), (w @ good).toarray()
        below = np.cumsum(wc, axis=1) - wc  # correct weight strictly below each tie class
        total = wf.sum(1) * wc.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + CHUNK] = (wf * (below + 0.5 * wc)).sum(1) / total
    return out


def _rng(seed: int, pair: str, generator: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}/{pair}/{generator}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def failure_prediction(responses: pa.Table, n_bootstrap: int, alpha: float, seed: int
                       ) -> pa.Table:
    """AUROC with a prompt-bootstrap (1 - alpha) interval per pair, generator and summary.

    responses: `agg_response_divergence` rows. A summary that is null for a response (no
    position in its first N) leaves that response out of that summary's AUROC.
    """
    df = responses.to_pandas()
    rows = []
    for (pair, generator), group in df.groupby(["pair", "generator"], sort=True):
        prompt_ids, prompts = np.unique(group["prompt_id"].to_numpy(), return_inverse=True)
        n = len(prompt_ids)
        draws = _rng(seed, pair, generator).multinomial(n, np.full(n, 1.0 / n), n_bootstrap)
        for summary in SUMMARIES:
            keep = group[summary].notna().to_numpy()
            scores = group[summary].to_numpy(dtype=np.float64)[keep]
            failed = (group["reward"].to_numpy() == 0)[keep]
            point = weighted_auroc(scores, failed, prompts[keep], np.ones((1, n)))[0]
            reps = weighted_auroc(scores, failed, prompts[keep], draws)
            reps = reps[~np.isnan(reps)]
            low, high = (np.quantile(reps, [alpha / 2, 1 - alpha / 2]) if len(reps)
                         else (np.nan, np.nan))
            rows.append({"pair": pair, "generator": generator, "summary": summary,
                         "n_responses": int(keep.sum()), "n_failed": int(failed.sum()),
                         "auroc": float(point), "auroc_low": float(low),
                         "auroc_high": float(high)})
    return pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)
