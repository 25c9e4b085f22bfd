"""Exact cross-model scoring: both models of a pair, teacher-forced on the same responses.

For every response position the base and the tuned model see the same prefix (prompt + response
so far); `rlvr.tokens.pairstats.pair_statistics` turns their two next-token distributions into the
token-table columns, exactly over the full vocabulary in float32 log-space. Responses to the
same prompt (RLVR samples several per prompt) share one encoding of it: each model runs the
distinct prompts of a batch once, and its KV cache is expanded to their responses.

Memory is bounded by the chunk sizes, not by the dataset or the vocabulary:
- batch: responses are packed so that rows * (longest prompt + longest response) <=
  `batch_tokens`, and fewer when both models' KV caches would pass `kv_bytes` (peak memory is
  then flat in the number of responses for any depth);
- time: each model's body runs over `time_chunk` columns at a time with a KV cache, so the
  live activations are batch * time_chunk * hidden (plus the KV cache of one batch);
- vocabulary: logits are never materialised for a whole sequence; the output head is applied to
  blocks of about `block_entries` (positions x vocabulary ids; at most `vocab_chunk` ids, as many
  positions as fit), and `pair_statistics` keeps about 12 such blocks of floats alive.
The model's logits must be its output head applied to its last hidden state (true for Llama,
Qwen2, Mistral); `rlvr.models.loading.check_head` verifies that before a model is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from rlvr.config import require
from rlvr.generation.sampler import left_pad
from rlvr.models.loading import check_head, check_same_vocab, load_spec, pin_torch_threads
from rlvr.models.specs import ModelEntry
from rlvr.progress import Progress
from rlvr.store.hashing import fingerprint
from rlvr.store.registry import SAMPLES
from rlvr.store.tables import (
    TOKENS_SCHEMA,
    pair_name,
    part_fingerprint,
    part_is_current,
    write_part,
)
from rlvr.tokens.pairstats import pair_statistics

Labeller = Callable[[Sequence[str]], list[str]]


@dataclass(frozen=True)
class ScoreResources:
    """`score.resources`: memory bounds and speed; no result depends on them (not in part
    fingerprints, not DVC params)."""

    vocab_chunk: int = 262144  # vocabulary ids per logits block; a wider vocabulary takes 2 passes
    block_entries: int | None = None  # positions x ids per block; None: 2**20 (CPU), 2**26 (GPU)
    time_chunk: int = 512  # sequence columns per body forward (KV cache between chunks)
    batch_tokens: int = 16384  # responses per batch x (longest prompt + longest response)
    # both models' KV caches per batch; None: 2**29 (CPU), 2**32 (GPU). A deep model's cache,
    # expanded to every response and grown by copies, is most of a batch's memory
    kv_bytes: int | None = None
    top_p_candidates: int = 128  # top-k per row for nuclei wider than the top 5; wider: a sort

    def __post_init__(self) -> None:
        for key in ("vocab_chunk", "time_chunk", "batch_tokens"):
            require(getattr(self, key) >= 1, key, "must be >= 1", "use a positive integer")
        require(self.vocab_chunk <= 2**24, "vocab_chunk", "must be <= 16777216 (ranks are "
                "counted in float32)", "use e.g. 262144")
        require(self.block_entries is None or self.block_entries >= 1, "block_entries",
                "must be null or >= 1", "use null (automatic) or e.g. 1048576")
        require(self.top_p_candidates >= 5, "top_p_candidates", "must be >= 5", "use e.g. 128")
        require(self.kv_bytes is None or self.kv_bytes >= 1, "kv_bytes",
                "must be null or >= 1", "use null (automatic) or e.g. 536870912")

    def tokens_per_batch(self, models: Sequence[PreTrainedModel]) -> int:
        """Rows x width of a batch: `batch_tokens`, fewer where the models' KV caches at that
        size would pass `kv_bytes`, so a batch's memory does not grow with the model's depth."""
        dev = models[0].device
        budget = self.kv_bytes or (2**29 if dev.type == "cpu" else 2**32)
        per_token = sum(2 * m.config.num_hidden_layers * m.config.num_key_value_heads
                        * _head_dim(m.config) * m.dtype.itemsize for m in models)
        return max(1, min(self.batch_tokens, budget // per_token))

    def rows_per_block(self, vocab: int, device: torch.device) -> int:
        """Positions per logits block: cache-sized blocks on a CPU, large ones on a GPU."""
        entries = self.block_entries or (2**20 if device.type == "cpu" else 2**26)
        return max(1, entries // min(vocab, self.vocab_chunk))


def _head_dim(config) -> int:
    # Llama and Mistral configs state it; Qwen2's does not (hidden size / heads there)
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


@dataclass(frozen=True)
class AuditParams:
    """`score.audit`: token rows per partition recomputed from the models in float64 before
    the table is marked complete (`rlvr.tokens.audit`); no row depends on them (not in part
    fingerprints)."""

    rows: int = 24  # per (pair, generator) partition; 0 turns the audit off
    seed: int = 0  # which rows are drawn

    def __post_init__(self) -> None:
        require(self.rows >= 0, "rows", "must be >= 0", "use e.g. 24 (0: no audit)")


@dataclass(frozen=True)
class ScoreParams:
    """`score`: which (base, tuned) pairs to score, what goes in the rows, and the resources."""

    base: str = "base"
    tuned: list[str] = field(default_factory=lambda: ["rl", "sft", "rft"])  # each with the base
    checkpoints: bool = True  # also pair the base with every RL checkpoint
    js_top_p: float = 0.7  # p of `js_top_p` (the study's truncation)
    audit: AuditParams = field(default_factory=AuditParams)
    resources: ScoreResources = field(default_factory=ScoreResources)

    def __post_init__(self) -> None:
        require(bool(self.tuned) and self.base not in self.tuned, "tuned",
                "must be a non-empty list without the base model", "e.g. [rl, sft]")
        require(0 < self.js_top_p <= 1, "js_top_p", "must be in (0, 1]", "use e.g. 0.7")

    def result_fields(self) -> dict[str, object]:
        """What of these knobs changes a token row: part of the part files' fingerprint."""
        return {"js_top_p": self.js_top_p}


@dataclass(frozen=True)
class Response:
    """One sampled response to score, with the exact ids its generator saw and produced."""

    prompt_id: str
    sample_id: int
    prompt_ids: list[int]
    response_ids: list[int]
    reward: int | None


def _head(model: PreTrainedModel) -> tuple[torch.Tensor, torch.Tensor | None]:
    head = model.get_output_embeddings()
    return head.weight, head.bias


def _logits(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, v0: int, v1: int
) -> torch.Tensor:
    """float32 logits of vocabulary ids [v0, v1) for hidden states x (R, H) -> (R, v1 - v0)."""
    return F.linear(x, weight[v0:v1].float(), None if bias is None else bias[v0:v1].float())


def _pack(responses: Sequence[Response], batch_tokens: int) -> list[list[int]]:
    """Response indices in batches with rows * (longest prompt + longest response) at most
    `batch_tokens`; responses to the same prompt are kept together (their prompt is encoded
    once) and longer responses come first (little padding)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(responses):
        groups.setdefault(tuple(r.prompt_ids), []).append(i)
    for g in groups.values():
        g.sort(key=lambda i: -len(responses[i].response_ids))
    batches: list[list[int]] = []
    widest = (0, 0)  # longest prompt and response of the open batch
    for g in sorted(groups.values(), key=lambda g: -len(responses[g[0]].response_ids)):
        for i in g:
            lp, lr = len(responses[i].prompt_ids), len(responses[i].response_ids)
            wide = (max(widest[0], lp), max(widest[1], lr))
            if batches and (len(batches[-1]) + 1) * sum(wide) <= batch_tokens:
                batches[-1].append(i)
                widest = wide
            else:
                batches.append([i])
                widest = (lp, lr)
    return batches


def _hidden_chunks(
    model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, step: int,
    cache: DynamicCache,
) -> Iterator[torch.Tensor]:
    """Last hidden states (B, e - s, H) of column chunks [s, e) of `ids` (B, W), which follow
    what `cache` holds; `mask` (B, cached + W) covers both."""
    body, width = model.get_decoder(), ids.shape[1]
    past = mask.shape[1] - width
    for s in range(0, width, step):
        e = min(s + step, width)
        out = body(input_ids=ids[:, s:e], attention_mask=mask[:, : past + e],
                   position_ids=pos[:, s:e], cache=cache, use_cache=True)
        yield out.last_hidden_state


def _encode_prompts(
    model: PreTrainedModel, prompts: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    expand: torch.Tensor, step: int,
) -> tuple[torch.Tensor, DynamicCache]:
    """Each distinct prompt once: the last hidden state (U, H) and a KV cache expanded to the
    batch's rows (`expand` (B,) maps each row to its prompt)."""
    cache = DynamicCache()
    *_, last = _hidden_chunks(model, *prompts, step, cache)
    cache.reorder_cache(expand)
    return last[:, -1], cache


@dataclass(frozen=True)
class _Batch:
    """Responses `rows` as model inputs: distinct prompts left-padded (`prompts`: ids, mask,
    positions, (U, Wp)) with `expand` (B,) mapping rows to them; responses right-padded
    (`ids` (B, W)), `mask` (B, Wp + W) over both and response `pos` (B, W)."""

    rows: list[int]
    prompts: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    expand: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor
    pos: torch.Tensor
    n_resp: torch.Tensor


def _batch(responses: Sequence[Response], rows: list[int], pad_id: int, dev) -> _Batch:
    assert all(len(responses[i].prompt_ids) > 0 for i in rows), "prompts need >= 1 token"
    slot: dict[tuple[int, ...], int] = {}
    for i in rows:
        slot.setdefault(tuple(responses[i].prompt_ids), len(slot))
    expand = torch.tensor([slot[tuple(responses[i].prompt_ids)] for i in rows], device=dev)
    prompts = tuple(x.to(dev) for x in left_pad(list(slot), pad_id))
    resp = [responses[i].response_ids for i in rows]
    n_resp = torch.tensor([len(r) for r in resp], device=dev)
    ids = torch.full((len(rows), int(n_resp.max())), pad_id, dtype=torch.long)
    for j, r in enumerate(resp):
        ids[j, : len(r)] = torch.tensor(r)
    col = torch.arange(ids.shape[1], device=dev)
    mask = torch.cat([prompts[1][expand], (col[None, :] < n_resp[:, None]).long()], 1)
    pos = prompts[2][expand, -1:] + 1 + col[None, :]
    return _Batch(rows, prompts, expand, ids.to(dev), mask, pos, n_resp)


def _positions(
    base: PreTrainedModel, tuned: PreTrainedModel, batch: _Batch, step: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Both models' last hidden states (R, H) at every response position of the batch, with
    the batch row (R,) and the position (R,) they predict: position 0 first (the prompt's last
    column), then response column c, which predicts position c + 1, one time chunk at a time."""
    (la, cache_a), (lb, cache_b) = (_encode_prompts(m, batch.prompts, batch.expand, step)
                                    for m in (base, tuned))
    everyone = torch.arange(len(batch.rows), device=batch.ids.device)
    yield la[batch.expand], lb[batch.expand], everyone, torch.zeros_like(everyone)
    ids, mask = batch.ids[:, :-1], batch.mask[:, :-1]  # the last token predicts nothing
    chunks = zip(_hidden_chunks(base, ids, mask, batch.pos, step, cache_a),
                 _hidden_chunks(tuned, ids, mask, batch.pos, step, cache_b), strict=True)
    for c, (ha, hb) in enumerate(chunks):
        col = c * step + torch.arange(ha.shape[1], device=ids.device)
        r, local = (col[None, :] + 1 < batch.n_resp[:, None]).nonzero(as_tuple=True)
        yield ha[r, local], hb[r, local], r, col[local] + 1


@torch.no_grad()
def score_batches(
    base: PreTrainedModel, tuned: PreTrainedModel, responses: Sequence[Response],
    params: ScoreParams, pad_id: int, progress: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Per batch, every statistic of every response position, ordered by (response, position).

    Columns: `response` (index into `responses`), `position`, `token_id`, and the statistics.
    Each distinct prompt of a batch is encoded once per model and its KV cache shared by the
    responses to it (RLVR data has several samples per prompt); the responses then run
    right-padded after it, so every position sees exactly its prompt + response so far.
    """
    wa, ba = _head(base)
    wb, bb = _head(tuned)
    vocab, dev = wa.shape[0], wa.device
    assert wb.shape[0] == vocab, "output heads differ in size: check_same_vocab first"
    block_rows = params.resources.rows_per_block(vocab, dev)
    batches = _pack(responses, params.resources.tokens_per_batch((base, tuned)))
    for rows in Progress(batches, "scoring", len(batches), "batch", progress):
        batch = _batch(responses, rows, pad_id, dev)
        rows_t = torch.tensor(rows, device=dev)
        out: dict[str, list[torch.Tensor]] = {}
        for ha, hb, r, position in _positions(base, tuned, batch, params.resources.time_chunk):
            targets = batch.ids[r, position]
            for part in torch.arange(len(r), device=dev).split(block_rows):
                xa, xb = ha[part].float(), hb[part].float()

                def logits_fn(sel, v0, v1, xa=xa, xb=xb):
                    ya, yb = (xa, xb) if sel is None else (xa[sel], xb[sel])
                    return _logits(ya, wa, ba, v0, v1), _logits(yb, wb, bb, v0, v1)

                res = params.resources
                stats = pair_statistics(logits_fn, targets[part], vocab, res.vocab_chunk,
                                        params.js_top_p, res.top_p_candidates)
                for key, value in stats.items():
                    out.setdefault(key, []).append(value)
            out.setdefault("response", []).append(rows_t[r])
            out.setdefault("position", []).append(position)
            out.setdefault("token_id", []).append(targets)
        cols = {k: torch.cat(v).cpu().numpy() for k, v in out.items()}
        order = np.lexsort((cols["position"], cols["response"]))
        yield {k: v[order] for k, v in cols.items()}


class TokenTexts:
    """Text of single token ids, decoded once each."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, ids: Sequence[int]) -> list[str]:
        for i in ids:
            if i not in self.cache:
                self.cache[i] = self.tokenizer.decode([i])
        return [self.cache[i] for i in ids]


def score_responses(
    base: PreTrainedModel, tuned: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
    responses: Sequence[Response], pair: str, generator: str, params: ScoreParams,
    labeller: Labeller | None = None, progress: bool = False, tuned_kind: str = "user",
    rl_step: int | None = None,
) -> Iterator[pa.Table]:
    """Token-table rows (`rlvr.store.tables.TOKENS_SCHEMA`) for `responses`, one table per batch."""
    texts = TokenTexts(tokenizer)
    for cols in score_batches(base, tuned, responses, params, tokenizer.pad_token_id, progress):
        resp = cols.pop("response")
        # the labeller sees each response whole, then rows take the role at their position
        uniq = np.unique(resp)
        roles = {int(i): labeller(texts(responses[i].response_ids)) if labeller else None
                 for i in uniq}
        n_tok = np.array([len(responses[i].response_ids) for i in resp], dtype=np.int32)
        table = {
            "pair": [pair] * len(resp), "generator": [generator] * len(resp),
            "tuned_kind": [tuned_kind] * len(resp), "rl_step": [rl_step] * len(resp),
            "prompt_id": [responses[i].prompt_id for i in resp],
            "sample_id": np.array([responses[i].sample_id for i in resp], dtype=np.int32),
            "n_tokens": n_tok,
            "token_text": texts(cols["token_id"].tolist()),
            "role": [None if roles[int(i)] is None else roles[int(i)][p]
                     for i, p in zip(resp, cols["position"], strict=True)],
            "reward": [responses[i].reward for i in resp],
            "delta_logprob": cols["logprob_tuned"] - cols["logprob_base"],
            **cols,
        }
        yield pa.table({f.name: pa.array(table[f.name], type=f.type) for f in TOKENS_SCHEMA},
                       schema=TOKENS_SCHEMA)


def read_responses(samples_part: str | Path) -> list[Response]:
    """The responses of one samples part file, in file order."""
    cols = ["prompt_id", "sample_id", "prompt_token_ids", "response_token_ids", "reward"]
    rows = SAMPLES.read_files([samples_part], cols).to_pylist()
    return [Response(r["prompt_id"], r["sample_id"], r["prompt_token_ids"],
                     r["response_token_ids"], r["reward"]) for r in rows]


def score_shard(
    base: ModelEntry, tuned: ModelEntry, generator: str, samples_part: str | Path,
    out_path: str | Path, params: ScoreParams, labeller: Labeller | None = None,
    progress: bool = False,
) -> dict:
    """Score one samples part file with both models of a pair into one atomic token part file.

    A part file written from the same model contents, samples and result parameters is kept
    as is (resources never enter the fingerprint). Returns a small summary (path, rows, skipped).
    """
    pair = pair_name(base.name, tuned.name)
    key = fingerprint(base=base.spec.identity(), tuned=tuned.spec.identity(),
                      samples=part_fingerprint(samples_part), params=params.result_fields(),
                      labeller=None if labeller is None else
                      f"{labeller.__module__}.{labeller.__qualname__}", pair=pair,
                      columns=TOKENS_SCHEMA.names,
                      generator=generator, tuned_kind=tuned.kind, rl_step=tuned.rl_step)
    if part_is_current(out_path, key):
        return {"path": str(out_path), "rows": pq.read_metadata(out_path).num_rows,
                "skipped": True}
    pin_torch_threads()
    base_model, base_tok = load_spec(base.spec)
    tuned_model, tuned_tok = load_spec(tuned.spec)
    check_same_vocab(base_tok, tuned_tok, base.spec.path, tuned.spec.path)
    check_head(base_model, base.spec.path)
    check_head(tuned_model, tuned.spec.path)
    if base_tok.pad_token_id is None:  # left padding is masked, so any id serves
        base_tok.pad_token_id = base_tok.eos_token_id
    tables = score_responses(base_model, tuned_model, base_tok, read_responses(samples_part),
                             pair, generator, params, labeller, progress, tuned.kind,
                             tuned.rl_step)
    rows = write_part(tables, out_path, TOKENS_SCHEMA, key)
    return {"path": str(out_path), "rows": rows, "skipped": False}
