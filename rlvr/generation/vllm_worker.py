"""vLLM generation worker: runs in `.venv-vllm` (never imported by the main environment).

    .venv-vllm/bin/python -P rlvr/vllm_worker.py REQUEST.json RESULT.json

REQUEST holds the engine settings and one entry per row: exact prompt token ids and a per-row
seed. RESULT gets, per row, the exact generated token ids (the stop token included, as the HF
sampler does), the log-prob of each under the untempered model, and `eos` | `length`. Text is
never detokenised: the caller decodes ids with its own tokenizer. Only the standard library
and vllm are imported here, so the two environments share nothing but these files.
"""

from __future__ import annotations

import json
import sys
import time


def run(request: dict) -> dict:
    from vllm import LLM, SamplingParams  # imported late: ~10 s, and only in .venv-vllm

    start = time.perf_counter()
    llm = LLM(
        model=request["model"],
        dtype=request["dtype"],
        max_model_len=request["max_model_len"],
        trust_remote_code=request["trust_remote_code"],
        enforce_eager=request["enforce_eager"],
        gpu_memory_utilization=request["gpu_memory_utilization"],
        seed=0,
    )
    loaded = time.perf_counter()
    sampling = request["sampling"]
    params = [
        SamplingParams(
            n=1,
            temperature=sampling["temperature"],
            top_p=sampling["top_p"],
            max_tokens=sampling["max_tokens"],
            stop_token_ids=sampling["stop_token_ids"],
            seed=row["seed"],
            logprobs=0,  # the sampled token's own log-prob only
            detokenize=False,
        )
        for row in request["rows"]
    ]
    prompts = [{"prompt_token_ids": row["prompt_token_ids"]} for row in request["rows"]]
    outputs = llm.generate(prompts, params, use_tqdm=request["progress"])
    done = time.perf_counter()
    rows = []
    for out in outputs:
        completion = out.outputs[0]
        ids = list(completion.token_ids)
        logprobs = [step[tok].logprob for tok, step in zip(ids, completion.logprobs, strict=True)]
        # vLLM says "stop" for EOS and for stop_token_ids alike; the caller asked only for EOS
        reason = "eos" if completion.finish_reason == "stop" else completion.finish_reason
        rows.append({"token_ids": ids, "logprobs": logprobs, "finish_reason": reason})
    import vllm

    return {
        "rows": rows,
        "vllm_version": vllm.__version__,
        "seconds_load": loaded - start,
        "seconds_generate": done - loaded,
    }


if __name__ == "__main__":  # vLLM starts engine processes that re-import this file
    with open(sys.argv[1]) as f:
        result = run(json.load(f))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
