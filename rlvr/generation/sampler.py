"""Batched, KV-cached sampling with exact token ids and reproducible per-response randomness.

Each response draws its random numbers from its own stream, seeded by (seed, key), and picks
tokens by inverse-CDF sampling. So a response's tokens do not depend on which other responses
share its batch, on the batch size, or on when its neighbours finish: batched and one-at-a-time
decoding give the same tokens. The cross-sampling decoder reuses these pieces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel

from rlvr.progress import Progress


@dataclass(frozen=True)
class SamplingParams:
    """How responses are drawn."""

    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 32
    seed: int = 0


@dataclass(frozen=True)
class Generation:
    """One sampled response with the exact ids fed to and produced by the model."""

    prompt_ids: list[int]
    response_ids: list[int]  # includes the EOS token when the model stopped by itself
    logprobs: list[float]  # log-prob of each response token under the untempered model
    finish_reason: str  # "eos" or "length"


def sampling_uniforms(seed: int, keys: Sequence[str], n_steps: int) -> torch.Tensor:
    """Uniforms in [0, 1), one stream per key: shape (len(keys), n_steps), float64."""
    rows = []
    for key in keys:
        digest = hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=8).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
        rows.append(torch.rand(n_steps, generator=gen, dtype=torch.float64))
    return torch.stack(rows) if rows else torch.empty(0, n_steps, dtype=torch.float64)


CANDIDATES = 64  # tokens ranked per row before a full sort is needed (the tail is rarely drawn)


def rank_tokens(probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most probable tokens of each row, in the tie rule's order: probability highest
    first, equal probabilities by lowest id first. (B, k) probabilities and ids."""
    values, ids = probs.topk(k, dim=-1)
    ids, by_id = ids.sort(dim=-1)  # stable sorts keep this id order among equal values
    values, order = values.gather(-1, by_id).sort(dim=-1, descending=True, stable=True)
    return values, ids.gather(-1, order)


def draw_index(values: torch.Tensor, uniforms: torch.Tensor, top_p: float,
               total: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where inverse-CDF draws land in ranked (B, n) rows, and each row's nucleus size (B, 1).

    uniforms: (B, K), K draws per row. The nucleus is the smallest ranked prefix whose mass
    reaches top_p (at least the top token), and u * its mass picks the rank; at top_p 1 the
    mass is `total`, the row's sum. The sampler and the decisiveness rollouts share it, so
    they draw the same tokens from the same uniforms.
    """
    cum = values.cumsum(-1)
    if top_p < 1.0:
        n_keep = ((cum - values) < top_p).sum(-1, keepdim=True)
        total = cum.gather(-1, n_keep - 1)
    else:
        n_keep = torch.full_like(cum[:, :1], values.shape[-1], dtype=torch.long)
    target = (uniforms.to(cum) * total).contiguous()
    return torch.minimum(torch.searchsorted(cum, target, right=True), n_keep - 1), n_keep


def _draw(values: torch.Tensor, ids: torch.Tensor, uniforms: torch.Tensor, top_p: float,
          total: torch.Tensor | None, complete: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-CDF draws over ranked (B, n) rows: token ids (B,), and whether each is exact.

    The nucleus and the draw are `draw_index`'s. Unless the ranking is `complete` (the whole
    vocabulary), only the ranked tokens above the last ranked value are sure to be the row's
    most probable in the tie rule's order: a draw is exact when it lands there and, below
    top_p 1, the nucleus ends there too.
    """
    idx, n_keep = draw_index(values, uniforms.unsqueeze(-1), top_p, total)
    if complete:
        exact = torch.ones_like(idx, dtype=torch.bool)
    else:
        sure = (values > values[:, -1:]).sum(-1, keepdim=True)
        exact = (idx < sure) & (n_keep <= sure) if top_p < 1.0 else idx < sure
    return ids.gather(-1, idx).squeeze(-1), exact.squeeze(-1)


def pick_tokens(
    logits: torch.Tensor, uniforms: torch.Tensor, temperature: float, top_p: float
) -> torch.Tensor:
    """Inverse-CDF sampling from tempered, top-p-truncated distributions.

    logits: (B, V) float; uniforms: (B,) in [0, 1). Returns token ids (B,) long.

    Tokens are ranked by probability, highest first, equal probabilities by lowest id (the
    scorer's tie rule), and u * mass falls into one of them (mass: the nucleus's, or the whole
    row's at top_p 1). Only the `CANDIDATES` most probable tokens of a row are ranked unless
    the draw or the nucleus reaches past them (then that row's whole vocabulary is sorted):
    the same token as a full sort, without sorting ~50k float64s per row and step.
    """
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    total = probs.sum(-1, keepdim=True) if top_p >= 1.0 else None
    vocab = probs.shape[-1]
    tokens, exact = _draw(*rank_tokens(probs, min(CANDIDATES, vocab)), uniforms, top_p, total,
                          complete=CANDIDATES >= vocab)
    rest = (~exact).nonzero().squeeze(-1)
    if len(rest):  # the tail: rank the whole row
        tokens[rest], _ = _draw(*rank_tokens(probs[rest], vocab), uniforms[rest], top_p,
                                None if total is None else total[rest], complete=True)
    return tokens


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token lists. Returns input_ids, attention_mask and position_ids, each (B, L)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def distinct_rows(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First occurrence of each distinct (ids, mask) row, in order, and each row's index into
    them: (U,) and (B,) long, with rows == rows[first][expand]."""
    slot: dict[tuple[int, ...], int] = {}
    first, expand = [], []
    for i, row in enumerate(torch.cat([ids, mask], 1).tolist()):
        key = tuple(row)
        if key not in slot:
            slot[key] = len(first)
            first.append(i)
        expand.append(slot[key])
    return torch.tensor(first, dtype=torch.long), torch.tensor(expand, dtype=torch.long)


SHARED_PREFIX = 16  # a common prefix at least this long runs once for every prompt


def common_prefix(ids: torch.Tensor, mask: torch.Tensor) -> int:
    """Length of the prefix that every left-padded row starts with, short of each row's last
    token (every row keeps at least one token of its own)."""
    rows = [row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True)]
    if not rows or not all(rows):
        return 0
    n = min(len(r) for r in rows) - 1
    for i in range(n):
        if any(r[i] != rows[0][i] for r in rows):
            return i
    return max(n, 0)


class CachedDecoder:
    """One model's KV cache over a left-padded batch: `prefill` once, then `step` per token."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.cache = DynamicCache()
        self._shared = 0  # prefix tokens that every row shares in the cache
        self.mask: torch.Tensor | None = None
        self.next_pos: torch.Tensor | None = None

    @torch.no_grad()
    def prefill(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Run the prompts (moved to the model's device); returns next-token logits (B, V) fp32.

        Rows repeating a prompt (RLVR draws several samples per prompt) share one forward: each
        distinct row runs once and its KV cache is copied to its repeats. Distinct prompts that
        open alike (a system prompt, a chat template's demonstrations) share that prefix too:
        it runs once and only each prompt's rest runs per prompt (`SHARED_PREFIX`). At a real
        model's prompt lengths the prefill otherwise costs more than decoding the responses.
        """
        dev = self.model.device
        first, expand = distinct_rows(ids, mask)
        ids, mask, positions = ids[first], mask[first], positions[first]
        shared = common_prefix(ids, mask)
        if len(first) > 1 and shared >= SHARED_PREFIX:
            ids, mask, positions = self._prefix(ids, mask, shared)
        ids, mask, positions = ids.to(dev), mask.to(dev), positions.to(dev)
        out = self.model(
            input_ids=ids,
            attention_mask=self._mask(mask),
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,  # not B x L x V logits: 10 GB at a 152k vocabulary, 64 x 512
        )
        expand = expand.to(dev)
        self.cache.reorder_cache(expand)
        self.mask, self.next_pos = self._mask(mask)[expand], positions[expand, -1] + 1
        return out.logits[:, -1, :].float()[expand]

    def _prefix(self, ids: torch.Tensor, mask: torch.Tensor, shared: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the first `shared` tokens common to every row once, expand their cache to the
        rows, and return what is left of each row: left-padded rests whose positions follow
        the prefix (the attention mask gets the prefix's ones in front, `_mask`)."""
        dev = self.model.device
        starts = (mask == 0).sum(-1)  # where each left-padded row begins
        prefix = ids[0, starts[0] : starts[0] + shared]
        self.model(input_ids=prefix[None].to(dev), cache=self.cache, use_cache=True,
                   position_ids=torch.arange(shared, device=dev)[None], logits_to_keep=1)
        self.cache.reorder_cache(torch.zeros(len(ids), dtype=torch.long, device=dev))
        rests = [row[start + shared :].tolist() for row, start in zip(ids, starts, strict=True)]
        ids, rest_mask, positions = left_pad(rests, pad_id=0)  # any id: masked
        self._shared = shared
        return ids, rest_mask, positions + shared

    def _mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The attention mask over the cache: the shared prefix's ones, then `mask`."""
        if not self._shared:
            return mask
        return torch.cat([mask.new_ones(len(mask), self._shared), mask], dim=1)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row (B,); returns the next-token logits (B, V) in float32."""
        assert self.mask is not None and self.next_pos is not None, "call prefill first"
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        out = self.model(
            input_ids=tokens.unsqueeze(1),
            attention_mask=self.mask,
            position_ids=self.next_pos.unsqueeze(1),
            cache=self.cache,
            use_cache=True,
        )
        self.next_pos = self.next_pos + 1
        return out.logits[:, -1, :].float()


def sample(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    keys: Sequence[str],
    params: SamplingParams,
    eos_id: int,
    pad_id: int,
    batch_size: int = 256,
    progress: bool = False,
    offsets: Sequence[int] | None = None,
) -> list[Generation]:
    """Sample one response per prompt row; `keys` name each row's random stream.

    Row i's first token uses draw `offsets[i]` of its stream (default 0): a continuation of a
    response from its position s, keyed like the response and offset by s, uses the draws the
    response itself would use there (common random numbers). Returns generations in input
    order. Stops a batch when every row hit EOS or the limit.
    """
    assert len(prompts) == len(keys), "one key per prompt row"
    offsets = [0] * len(prompts) if offsets is None else list(offsets)
    assert len(offsets) == len(prompts), "one offset per prompt row"
    results: list[Generation] = []
    starts = range(0, len(prompts), batch_size)
    for start in Progress(starts, "sampling", len(starts), "batch", progress):
        rows = prompts[start : start + batch_size]
        shift = torch.tensor(offsets[start : start + batch_size])
        u = sampling_uniforms(params.seed, keys[start : start + batch_size],
                              params.max_new_tokens + int(shift.max()))
        u = u.gather(1, shift[:, None] + torch.arange(params.max_new_tokens)[None, :])
        decoder = CachedDecoder(model)
        logits = decoder.prefill(*left_pad(rows, pad_id))
        done = torch.zeros(len(rows), dtype=torch.bool, device=logits.device)
        tokens_out, logps_out = [], []
        for t in range(params.max_new_tokens):
            tok = pick_tokens(logits, u[:, t], params.temperature, params.top_p)
            tok = torch.where(done, torch.full_like(tok, pad_id), tok)
            logp = torch.log_softmax(logits, -1).gather(-1, tok.unsqueeze(-1)).squeeze(-1)
            tokens_out.append(tok)
            logps_out.append(logp)
            done = done | (tok == eos_id)
            if bool(done.all()) or t == params.max_new_tokens - 1:
                break
            logits = decoder.step(tok)
        toks = torch.stack(tokens_out, 1).tolist()
        logps = torch.stack(logps_out, 1).tolist()
        for i, row in enumerate(rows):
            n = toks[i].index(eos_id) + 1 if eos_id in toks[i] else len(toks[i])
            results.append(
                Generation(
                    prompt_ids=list(row),
                    response_ids=toks[i][:n],
                    logprobs=logps[i][:n],
                    finish_reason="eos" if toks[i][n - 1] == eos_id else "length",
                )
            )
    return results
