"""The report's token viewer: responses with each token coloured by JS; on hover, every column
of the token table at that position and both models' top candidates.

The token table keeps only each model's top-1 token, so the top-k candidates of the few shown
responses are recomputed here with one teacher-forced forward pass per model and response (the
same inputs the scorer used: prompt ids + response ids).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.layout import Layout
from rlvr.models.loading import load_spec
from rlvr.models.specs import ModelSpec
from rlvr.report.blocks import Legend, Response, Token
from rlvr.store.registry import SAMPLES, TOKENS, TableIncomplete

# JS colour bins (nats): the edges of the study's threshold sweep; last bin ends at ln 2
JS_EDGES = (0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3)
JS_COLOURS = ("#ffffff", "#fff3c4", "#ffe08a", "#fdb863", "#f4845f", "#d7301f", "#7f0000")
RESPONSE_KEYS = ["pair", "generator", "prompt_id", "sample_id"]
# what the header and the hover's first lines show; every other token column follows in the
# hover as `name value`, so a column added to the registry's token table appears there too
SHOWN = {*RESPONSE_KEYS, "reward", "n_tokens", "token_text", "position", "js", "role",
         "logprob_base", "logprob_tuned"}
PER_LINE = 3  # `name value` entries per hover line


def js_colour(js: float) -> str:
    """Background colour of a token with divergence `js`: the bin of `JS_EDGES` it falls in."""
    if math.isnan(js):
        return "#dddddd"
    index = sum(js >= edge for edge in JS_EDGES) - 1
    return JS_COLOURS[max(index, 0)]


@dataclass(frozen=True)
class Candidates:
    """Top-k next-token candidates of both models at each response position."""

    base: list[list[tuple[str, float]]]  # per position: (token text, probability), best first
    tuned: list[list[tuple[str, float]]]


def select_responses(rows: pd.DataFrame, per_group: int, pairs: Sequence[str] = ()
                     ) -> pd.DataFrame:
    """Keys of the responses to show: the first `per_group` (by prompt_id, sample_id) of every
    (pair, generator, reward) group, optionally only for `pairs`, each a distinct response (a
    prompt sampled several times often gets the same tokens twice; those show once).

    `rows`: token rows with the response keys, reward, position and token_id. Returns pair,
    generator, prompt_id, sample_id, reward.
    """
    keys = RESPONSE_KEYS
    if pairs:
        rows = rows[rows["pair"].isin(list(pairs))]
    rows = rows.sort_values([*keys, "position"])
    table = rows.groupby(keys, sort=False).agg(reward=("reward", "first"),
                                               tokens=("token_id", tuple)).reset_index()
    table = table.drop_duplicates(["pair", "generator", "prompt_id", "reward", "tokens"])
    table = table.sort_values(["pair", "generator", "reward", "prompt_id", "sample_id"],
                              ascending=[True, True, False, True, True])
    return table.groupby(["pair", "generator", "reward"], sort=False).head(per_group) \
        .drop(columns="tokens").reset_index(drop=True)


def _of_prompts(chosen: pd.DataFrame) -> pc.Expression:
    return pc.field("prompt_id").isin(chosen["prompt_id"].unique().tolist())


def load_response_tokens(layout: Layout, chosen: pd.DataFrame) -> pd.DataFrame:
    """Every column of the `chosen` responses' token rows, by response then position."""
    rows = TOKENS.read(layout, filters=_of_prompts(chosen)).to_pandas()
    rows = rows[[c for c in rows.columns if c in TOKENS.schema.names]]  # no writer's extras
    rows = rows.merge(chosen[RESPONSE_KEYS], on=RESPONSE_KEYS, how="inner")
    return rows.sort_values([*RESPONSE_KEYS, "position"]).reset_index(drop=True)


@torch.no_grad()
def top_candidates(
    base: PreTrainedModel,
    tuned: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    k: int = 5,
) -> Candidates:
    """Teacher-forced top-k of both models at each of the response's positions.

    Position t's distribution is the model's next-token distribution after prompt + response[:t],
    exactly what the scorer compared.
    """
    ids = torch.tensor([list(prompt_ids) + list(response_ids)], dtype=torch.long)
    start = len(prompt_ids) - 1
    out = []
    for model in (base, tuned):
        logits = model(input_ids=ids).logits[0, start : start + len(response_ids)].float()
        probs, index = torch.softmax(logits, -1).topk(min(k, logits.shape[-1]), dim=-1)
        rows = []
        for p_row, i_row in zip(probs.tolist(), index.tolist(), strict=True):
            texts = [tokenizer.decode([i]) for i in i_row]  # ' is', not the BPE piece 'Ġis'
            rows.append(list(zip(texts, p_row, strict=True)))
        out.append(rows)
    return Candidates(base=out[0], tuned=out[1])


def _fmt_candidates(rows: list[tuple[str, float]]) -> str:
    return ", ".join(f"{tok!r} {p:.2f}" for tok, p in rows)


def _value(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None  # null: nothing to show
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _tooltip(tok: pd.Series, candidates: Candidates | None, pos: int) -> str:
    lines = [f"{str(tok['token_text'])!r} pos {tok['position']}  JS {tok['js']:.4f}"]
    if "role" in tok and isinstance(tok["role"], str):
        lines[0] += f"  role {tok['role']}"
    lines.append(f"p_base {math.exp(tok['logprob_base']):.3f}  "
                 f"p_tuned {math.exp(tok['logprob_tuned']):.3f}")
    if candidates is not None:
        lines.append("base top: " + _fmt_candidates(candidates.base[pos]))
        lines.append("tuned top: " + _fmt_candidates(candidates.tuned[pos]))
    rest = [f"{name} {shown}" for name, value in tok.items()
            if name not in SHOWN and (shown := _value(value)) is not None]
    lines += ["  ".join(rest[i:i + PER_LINE]) for i in range(0, len(rest), PER_LINE)]
    return "\n".join(lines)


def render_response(
    rows: pd.DataFrame, prompt_text: str, candidates: Candidates | None
) -> Response:
    """One response of the viewer: a header line, the prompt, and one coloured token each."""
    first = rows.iloc[0]
    verdict = "correct" if int(first["reward"]) == 1 else "incorrect"
    head = (f"{first['pair']} · generator {first['generator']} · {first['prompt_id']} "
            f"#{first['sample_id']} · {verdict} · {len(rows)} tokens · max JS "
            f"{rows['js'].max():.3f}")
    texts = [str(t) for t in rows["token_text"]]
    tokens = []
    for i, (_, tok) in enumerate(rows.iterrows()):
        colour = js_colour(float(tok["js"]))
        tokens.append(Token(texts[i].replace("\n", "↵\n"),  # newlines visible, and kept
                            colour, f"{tok['js']:.6f}", _tooltip(tok, candidates, i),
                            dark=colour in JS_COLOURS[-2:],
                            template=tok.get("role") == "template"))
    # byte-level BPE pieces carry their own spaces (' is'); word-level ones (the toy) do not
    joiner = "" if any(t[:1].isspace() for t in texts) else " "
    return Response(head, prompt_text, tokens, joiner)


def legend() -> Legend:
    """The colour legend: one swatch per JS bin."""
    edges = list(JS_EDGES) + [math.log(2.0)]
    return Legend([(f"{lo:g}–{hi:.3g}", colour, colour in JS_COLOURS[-2:])
                   for lo, hi, colour in zip(edges[:-1], edges[1:], JS_COLOURS, strict=True)])


def sample_ids(layout: Layout, chosen: pd.DataFrame) -> pd.DataFrame | None:
    """Exact prompt/response ids of the chosen responses' prompts (model, prompt_id,
    sample_id, prompt_token_ids, response_token_ids); None while the samples are incomplete."""
    cols = ["model", "prompt_id", "sample_id", "prompt_token_ids", "response_token_ids"]
    try:
        return SAMPLES.read(layout, cols, _of_prompts(chosen)).to_pandas()
    except TableIncomplete:
        return None


@dataclass
class ViewerResult:
    """The viewer's responses, and what kept hover candidates from being computed."""

    blocks: list[Response]
    missing_models: list[str]  # model directories that do not exist
    have_samples: bool  # False: no prompt ids, so no candidates and no prompt text


def render_viewer(
    layout: Layout,
    resolve: Callable[[str], ModelSpec],
    per_group: int,
    pairs: Sequence[str] = (),
    top_k: int = 5,
) -> ViewerResult:
    """The chosen responses (see `select_responses`) with every token column on hover, and
    the top-k candidates when the samples (for the exact prompt ids) and both models of the
    pair are present. TableIncomplete when the token table is.

    Models are resolved by name through `resolve` (the `models` section) and loaded once each;
    responses are the few the report shows, so the teacher-forced forwards are cheap.
    """
    index = TOKENS.read(layout, [*RESPONSE_KEYS, "reward", "position", "token_id"])
    chosen = select_responses(index.to_pandas(), per_group, pairs)
    rows = load_response_tokens(layout, chosen)
    ids = sample_ids(layout, chosen)
    loaded: dict[ModelSpec, tuple] = {}
    missing: set[str] = set()
    blocks = []
    for (pair, gen, pid, sid), resp in rows.groupby(RESPONSE_KEYS, sort=False):
        names = str(pair).split("__", 1)
        specs = [resolve(n) for n in names]
        absent = [s.path for s in specs if not (Path(s.path) / "config.json").exists()]
        missing.update(absent)
        sample = None
        if ids is not None:
            author = names[0] if gen == "base" else names[1]
            sample = ids[(ids["model"] == author) & (ids["prompt_id"] == pid)
                         & (ids["sample_id"] == sid)]
        candidates, prompt_text = None, str(pid)
        if sample is not None and len(sample) and not absent:
            for spec in specs:
                if spec not in loaded:
                    loaded[spec] = load_spec(spec)
            (base, tokenizer), (tuned, _) = loaded[specs[0]], loaded[specs[1]]
            prompt_ids = [int(i) for i in sample["prompt_token_ids"].iloc[0]]
            response_ids = resp["token_id"].astype(int).tolist()
            candidates = top_candidates(base, tuned, tokenizer, prompt_ids, response_ids, top_k)
            prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=True)
        blocks.append(render_response(resp, prompt_text, candidates))
    return ViewerResult(blocks, sorted(missing), ids is not None)
