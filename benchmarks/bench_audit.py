"""Benchmark: what the float64 audit adds to the score stage, per (pair, generator) partition.

Two random Llama models of SmolLM2-135M-Instruct's shape (hidden 576, 30 layers, 9 heads /
3 KV heads, vocabulary 49,152; no download), saved as Hugging Face directories; a samples part
of `--responses` responses (`--prompt-tokens` prompt tokens shared by 4 responses each, as the
real run samples them, `--response-tokens` response tokens); the scorer writes the token part
(the baseline, timed), then `rlvr.tokens.audit.audit_partition` recomputes `--rows` rows from
both models in float64 (timed: model loads and casts included). Prints both times and their
ratio. Run: `nice -n 15 .venv/bin/python benchmarks/bench_audit.py [--threads 1]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from rlvr.models.loading import save_model
from rlvr.models.specs import ModelEntry, ModelSpec
from rlvr.store.tables import SAMPLES_SCHEMA, mark_complete, part_path, write_part
from rlvr.tokens.audit import audit_partition
from rlvr.tokens.scorer import AuditParams, ScoreParams, score_shard

SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
               num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
               max_position_embeddings=2048, tie_word_embeddings=True)


def tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of `vocab` ids (the scorer decodes token texts with it)."""
    from tokenizers import Tokenizer, models

    words = {f"w{i}": i for i in range(vocab)}
    tok = Tokenizer(models.WordLevel(words, unk_token="w0"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0", pad_token="w1",
                                   eos_token="w2")


def samples_part(path: Path, n: int, prompt: int, response: int, vocab: int) -> None:
    gen = torch.Generator().manual_seed(0)
    rows, prompts = [], {}
    for i in range(n):
        if i % 4 == 0:  # 4 responses per prompt
            prompts[i // 4] = torch.randint(3, vocab, (prompt,), generator=gen).tolist()
        prompt_ids = prompts[i // 4]
        ids = torch.randint(3, vocab, (response,), generator=gen).tolist()
        rows.append({"model": "base", "model_kind": "base", "rl_step": None,
                     "prompt_id": f"p{i // 4}", "sample_id": i % 4, "prompt": "", "answer": "",
                     "prompt_token_ids": prompt_ids, "response_token_ids": ids,
                     "response_text": "", "n_tokens": response, "finish_reason": "length",
                     "reward": 0, "sampling_logprobs": [-1.0] * response, "temperature": 1.0,
                     "top_p": 1.0, "max_new_tokens": response, "seed": 0})
    write_part([pa.Table.from_pylist(rows, SAMPLES_SCHEMA)], path, SAMPLES_SCHEMA, "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=85)
    parser.add_argument("--response-tokens", type=int, default=32)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        root = Path(tmp)
        tok = tokenizer(SMOLLM2["vocab_size"])
        entries = []
        for name, seed in (("base", 0), ("rl", 1)):
            torch.manual_seed(seed)
            save_model(LlamaForCausalLM(LlamaConfig(**SMOLLM2)).eval(), tok, root / name)
            entries.append(ModelEntry(name, name, None, ModelSpec(name, str(root / name))))
        samples = part_path(root / "samples" / "model=base", 0)
        samples_part(samples, args.responses, args.prompt_tokens, args.response_tokens,
                     SMOLLM2["vocab_size"])
        mark_complete(samples.parents[1])  # the audit reads samples of a complete table only
        tokens = part_path(root / "tokens" / "pair=base__rl" / "generator=base", 0)
        start = time.perf_counter()
        score_shard(*entries, "base", samples, tokens, ScoreParams(label_roles=False))
        scored = time.perf_counter() - start
        n_rows = args.responses * args.response_tokens
        start = time.perf_counter()
        audit_partition(tokens.parent, samples.parent, entries[0].spec, entries[1].spec,
                        AuditParams(rows=args.rows), "tokens_base__rl_base", None)
        audited = time.perf_counter() - start
    print(f"{n_rows} token rows ({args.responses} responses), {args.threads} thread(s)")
    print(f"scorer: {scored:.1f} s; audit of {args.rows} rows in float64: {audited:.1f} s "
          f"({audited / args.rows:.2f} s per row); audit / scoring = {audited / scored:.2f}")


if __name__ == "__main__":
    main()
