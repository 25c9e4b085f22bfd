"""One cross-sampling cell's rows of the `cross_samples` / `cross_tokens` tables.

Their columns and meanings are registry entries (`rlvr.store.registry`, `rlvr describe`); the
step's signals of `cross_tokens` are the `rlvr.cross.decoder.CrossGeneration` attributes of the
same names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
from transformers import PreTrainedTokenizerBase

from rlvr.cross.decoder import CrossGeneration
from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import sample_keys
from rlvr.store.registry import CROSS_SAMPLES, CROSS_TOKENS
from rlvr.store.tables import to_table
from rlvr.testbed.prompts import PromptRecord

if TYPE_CHECKING:  # the cell type only: rlvr.cross.sweep imports this module
    from rlvr.cross.sweep import CrossCell

CROSS_SAMPLES_SCHEMA, CROSS_TOKENS_SCHEMA = CROSS_SAMPLES.schema, CROSS_TOKENS.schema
# the step's signals: every column after `source_model`, each a CrossGeneration attribute
SIGNALS = tuple(CROSS_TOKENS_SCHEMA.names[CROSS_TOKENS_SCHEMA.names.index("source_model") + 1:])


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
        for name in SIGNALS:
            tokens[name] += getattr(gen, name)
    return to_table(samples, CROSS_SAMPLES_SCHEMA), to_table(tokens, CROSS_TOKENS_SCHEMA)
