"""The cross-sampling tables: schemas of `cross_samples` / `cross_tokens` and one cell's rows.

`cross_samples`: arm, direction, alpha, top_k, pair (`<base>__<tuned>`), primary_model,
intervention_model, rule, target_budget, calibration_round, threshold (a rate for random; the
mean rate when matched per response), matched_rule (random matched per response: the rule whose
shares it copies), seed, prompt_id, sample_id, prompt, answer, prompt_token_ids,
response_token_ids, response_text, n_tokens (EOS included), n_switched, switch_share
(= n_switched / n_tokens, the budget of one response), finish_reason, reward, temperature,
top_p, max_new_tokens.
`cross_tokens`: arm, direction, pair, rule, target_budget, threshold, seed, prompt_id, sample_id,
position, token_id, token_text, is_switched, source_model, the step's signals (js, both
entropies, both log-probs of the chosen token, delta_top, gap_top, gap_sampled, both KLs,
kl_sym, kl_sym_topk) and, for top-K mixing at switched steps, mix_tv and mix_differs (see
`rlvr.cross.decoder.CrossGeneration`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
from transformers import PreTrainedTokenizerBase

from rlvr.cross.decoder import CrossGeneration
from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import sample_keys
from rlvr.store.tables import to_table
from rlvr.testbed.prompts import PromptRecord

if TYPE_CHECKING:  # the cell type only: rlvr.cross.sweep imports this module
    from rlvr.cross.sweep import CrossCell

CROSS_SAMPLES_SCHEMA = pa.schema([
    pa.field("arm", pa.string(), nullable=False),
    pa.field("direction", pa.string(), nullable=False),
    pa.field("alpha", pa.float64(), nullable=False),
    pa.field("top_k", pa.int32(), nullable=False),
    pa.field("pair", pa.string(), nullable=False),
    pa.field("primary_model", pa.string(), nullable=False),
    pa.field("intervention_model", pa.string(), nullable=False),
    pa.field("rule", pa.string(), nullable=False),
    pa.field("target_budget", pa.float64(), nullable=False),
    pa.field("calibration_round", pa.int32(), nullable=False),
    pa.field("threshold", pa.float64(), nullable=False),
    pa.field("matched_rule", pa.string()),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("sample_id", pa.int32(), nullable=False),
    pa.field("prompt", pa.string()),
    pa.field("answer", pa.string()),
    pa.field("prompt_token_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("response_token_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("response_text", pa.string(), nullable=False),
    pa.field("n_tokens", pa.int32(), nullable=False),
    pa.field("n_switched", pa.int32(), nullable=False),
    pa.field("switch_share", pa.float64(), nullable=False),
    pa.field("finish_reason", pa.string(), nullable=False),
    pa.field("reward", pa.int8(), nullable=False),
    pa.field("temperature", pa.float32(), nullable=False),
    pa.field("top_p", pa.float32(), nullable=False),
    pa.field("max_new_tokens", pa.int32(), nullable=False),
])

TOKEN_F32 = ("js", "entropy_primary", "entropy_intervention", "logprob_primary",
             "logprob_intervention", "delta_top", "gap_top", "gap_sampled",
             "kl_primary_intervention", "kl_intervention_primary", "kl_sym", "kl_sym_topk")
CROSS_TOKENS_SCHEMA = pa.schema([
    pa.field("arm", pa.string(), nullable=False),
    pa.field("direction", pa.string(), nullable=False),
    pa.field("pair", pa.string(), nullable=False),
    pa.field("rule", pa.string(), nullable=False),
    pa.field("target_budget", pa.float64(), nullable=False),
    pa.field("threshold", pa.float64(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("sample_id", pa.int32(), nullable=False),
    pa.field("position", pa.int32(), nullable=False),
    pa.field("token_id", pa.int32(), nullable=False),
    pa.field("token_text", pa.string(), nullable=False),
    pa.field("is_switched", pa.bool_(), nullable=False),
    pa.field("source_model", pa.string(), nullable=False),
    *[pa.field(name, pa.float32(), nullable=False) for name in TOKEN_F32],
    pa.field("mix_tv", pa.float32()),
    pa.field("mix_differs", pa.bool_()),
])


def cell_rows(
    cell: CrossCell, records: Sequence[PromptRecord], n: int, gens: Sequence[CrossGeneration],
    tokenizer: PreTrainedTokenizerBase, params: SamplingParams, pair: str,
    grader: Callable[[str, str], int],
) -> tuple[pa.Table, pa.Table]:
    """The samples and tokens rows of one cell, generations laid out as `sample_keys`."""
    index, _ = sample_keys(records, n)
    eos = tokenizer.eos_token_id
    samples: dict[str, list] = {name: [] for name in CROSS_SAMPLES_SCHEMA.names}
    tokens: dict[str, list] = {name: [] for name in CROSS_TOKENS_SCHEMA.names}
    threshold = cell.threshold if cell.rates is None else sum(cell.rates) / len(cell.rates)
    shared = {"arm": cell.arm, "direction": cell.direction, "pair": pair, "rule": cell.rule,
              "target_budget": cell.target_budget, "threshold": threshold, "seed": cell.seed}
    texts: dict[int, str] = {}  # each id's text once: decoding is the slow part of the rows
    for row, (i, gen) in enumerate(zip(index, gens, strict=True)):
        rec, ids = records[i], gen.response_ids
        body = ids[:-1] if gen.finish_reason == "eos" else ids
        text = tokenizer.decode(body, skip_special_tokens=True)
        n_switched = sum(gen.switched)
        values = {
            **shared, "alpha": cell.alpha, "top_k": cell.top_k, "primary_model": cell.primary,
            "intervention_model": cell.intervention, "calibration_round": cell.calibration_round,
            "matched_rule": cell.matched_rule, "prompt_id": rec.prompt_id, "sample_id": row % n,
            "prompt": rec.prompt, "answer": rec.answer, "prompt_token_ids": gen.prompt_ids,
            "response_token_ids": ids, "response_text": text, "n_tokens": len(ids),
            "n_switched": n_switched, "switch_share": n_switched / len(ids),
            "finish_reason": gen.finish_reason, "reward": grader(text, rec.answer),
            "temperature": params.temperature, "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
        }
        assert ids[-1:] != [eos] or gen.finish_reason == "eos"
        for key, value in values.items():
            samples[key].append(value)
        k = len(ids)
        for key, value in shared.items():
            tokens[key] += [value] * k
        tokens["prompt_id"] += [rec.prompt_id] * k
        tokens["sample_id"] += [row % n] * k
        tokens["position"] += list(range(k))
        tokens["token_id"] += ids
        for t in ids:
            if t not in texts:
                texts[t] = tokenizer.decode([t])  # readable, as in `tokens`
        tokens["token_text"] += [texts[t] for t in ids]
        tokens["is_switched"] += gen.switched
        tokens["source_model"] += [cell.intervention if s else cell.primary for s in gen.switched]
        for name in (*TOKEN_F32, "mix_tv", "mix_differs"):
            tokens[name] += getattr(gen, name)
    return to_table(samples, CROSS_SAMPLES_SCHEMA), to_table(tokens, CROSS_TOKENS_SCHEMA)
