"""Model specs from params, loading errors, and the `hf` generation backend."""

from __future__ import annotations

import pytest
import torch

from rlvr.config import BackendConfig, ModelsConfig, ModelSpec, from_section
from rlvr.generation.backends import (
    HFBackend,
    VLLMBackend,
    check_lengths,
    check_pair,
    load_spec,
    make_backend,
    row_seed,
)
from rlvr.generation.sampler import SamplingParams, sample
from rlvr.models.loading import save_model
from rlvr.testbed.model import build_tokenizer


@pytest.fixture(scope="module")
def saved_pair(tmp_path_factory, tiny_pair, tokenizer):
    """The tiny pair saved as two HF directories, like data/models/{base,rl}."""
    root = tmp_path_factory.mktemp("models")
    for name, model in zip(("base", "rl"), tiny_pair, strict=True):
        save_model(model, tokenizer, root / name)
    return root


def test_models_config_defaults_to_the_toy_family():
    config = from_section(ModelsConfig, {}, "models")
    spec = config.spec("rl")
    assert (spec.path, spec.dtype, spec.device, spec.trust_remote_code) == (
        "data/models/rl", "fp32", "cpu", False)


def test_models_config_named_entries_override_defaults():
    params = {"models": {"dtype": "bf16", "device": "cuda", "named": {
        "base": {"path": "/m/Qwen2.5-Math-7B", "max_model_len": 4096},
        "rl": {"path": "/m/SimpleRL", "dtype": "fp16", "trust_remote_code": True},
    }}}
    config = from_section(ModelsConfig, params, "models")
    base, rl, sft = config.spec("base"), config.spec("rl"), config.spec("sft")
    assert (base.path, base.dtype, base.device, base.max_model_len) == (
        "/m/Qwen2.5-Math-7B", "bf16", "cuda", 4096)
    assert (rl.dtype, rl.trust_remote_code, rl.key) == ("fp16", True, "models.named.rl")
    assert (sft.path, sft.key) == ("data/models/sft", "models")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"dtype": "float8"}, r"`models.dtype`: unknown dtype 'float8'"),
        ({"named": {"rl": {"path": "x", "dtype": "int4"}}}, r"`models.named.rl.dtype`"),
        ({"named": {"rl": {"paht": "x"}}}, r"`models.named.rl.paht`: unknown key"),
        ({"named": {"rl": "data/models/rl"}}, r"`models.named.rl`: must be a mapping"),
        ({"device": "tpu"}, r"`models.device`: unknown device 'tpu'"),
        ({"max_model_len": -1}, r"`models.max_model_len`: must be >= 0"),
        ({"trust_remote_code": "yes"}, r"`models.trust_remote_code`: must be true or false"),
    ],
)
def test_models_config_errors_name_the_key(section, message):
    with pytest.raises(ValueError, match=message):
        from_section(ModelsConfig, {"models": section}, "models")


def test_backend_config_errors():
    assert from_section(BackendConfig, {}, "backend").name == "hf"
    with pytest.raises(ValueError, match="`backend.name`: unknown backend 'sglang'"):
        from_section(BackendConfig, {"backend": {"name": "sglang"}}, "backend")


def test_load_spec_missing_directory_names_key_and_path(tmp_path):
    spec = ModelsConfig(named={"rl": {"path": str(tmp_path / "nope")}}).spec("rl")
    with pytest.raises(FileNotFoundError, match=rf"`models.named.rl.path`: no model at "
                                                rf"{tmp_path / 'nope'}"):
        load_spec(spec)


def test_load_spec_without_tokenizer_names_key_and_path(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "weights_only")
    spec = ModelsConfig(root=str(tmp_path)).spec("weights_only")
    with pytest.raises(FileNotFoundError, match=rf"`models.path`: no tokenizer in "
                                                rf"{tmp_path / 'weights_only'}"):
        load_spec(spec)


def test_load_spec_dtype_and_round_trip(saved_pair, tiny_pair):
    model, tok = load_spec(ModelsConfig(root=str(saved_pair), dtype="bf16").spec("base"))
    assert model.dtype == torch.bfloat16 and not model.training
    assert tok.get_vocab() == build_tokenizer().get_vocab()
    fp32, _ = load_spec(ModelsConfig(root=str(saved_pair)).spec("base"))
    ids = torch.tensor([[1, 5, 20, 30]])
    with torch.no_grad():
        assert torch.equal(fp32(ids).logits, tiny_pair[0](ids).logits)


def test_check_pair_stops_on_different_vocabularies(saved_pair, tmp_path, tiny_model):
    config = ModelsConfig(root=str(saved_pair), named={"other": {"path": str(tmp_path / "o")}})
    assert check_pair(config.spec("base"), config.spec("rl")).get_vocab() == (
        build_tokenizer().get_vocab())
    other = build_tokenizer()
    other.add_tokens(["<think>"])
    save_model(tiny_model, other, tmp_path / "o")
    n = len(build_tokenizer())
    with pytest.raises(ValueError, match=rf"{saved_pair / 'base'} and {tmp_path / 'o'} differ "
                                         rf"first at id {n}: None vs '<think>'"):
        check_pair(config.spec("base"), config.spec("other"))
    with pytest.raises(FileNotFoundError, match=r"`models.named.nope.path`: no model at /x/y"):
        check_pair(config.spec("base"), ModelsConfig(named={"nope": {"path": "/x/y"}}).spec("nope"))


def test_check_lengths_errors():
    spec = ModelSpec(name="base", path="p", max_prompt_tokens=4, max_model_len=10,
                     key="models.named.base")
    check_lengths([[1, 2, 3, 4]], 6, spec)
    with pytest.raises(ValueError, match=r"`models.named.base.max_prompt_tokens`: prompt row 1"):
        check_lengths([[1], [1, 2, 3, 4, 5]], 1, spec)
    with pytest.raises(ValueError, match=r"`models.named.base.max_model_len`"):
        check_lengths([[1, 2, 3, 4]], 7, spec)


def test_hf_backend_matches_the_sampler(saved_pair, tiny_pair, tokenizer):
    prompts = [tokenizer.encode(f"sum {a} {b} {c} :") for a, b, c in [(1, 2, 3), (9, 9, 9)]] * 3
    keys = [f"p{i}/s{i // 2}" for i in range(len(prompts))]
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=12, seed=7)
    spec = ModelsConfig(root=str(saved_pair)).spec("base")
    backend = make_backend("hf", spec, tokenizer, batch_size=4)
    assert isinstance(backend, HFBackend)
    got = backend.generate(prompts, keys, params)
    want = sample(tiny_pair[0], prompts, keys, params, tokenizer.eos_token_id,
                  tokenizer.pad_token_id, batch_size=len(prompts))
    assert [g.response_ids for g in got] == [g.response_ids for g in want]
    assert [g.finish_reason for g in got] == [g.finish_reason for g in want]
    for g, w in zip(got, want, strict=True):
        assert g.prompt_ids == w.prompt_ids
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-5)


def test_vllm_backend_without_its_environment_says_how_to_build_it(tmp_path, tokenizer):
    spec = ModelSpec(name="base", path=str(tmp_path))
    backend = make_backend("vllm", spec, tokenizer, vllm_python=tmp_path / "no/python")
    assert isinstance(backend, VLLMBackend)
    with pytest.raises(ValueError, match=r"no vLLM environment at .*scripts/install_vllm.sh"):
        backend.generate([[1, 2]], ["k"], SamplingParams())
    with pytest.raises(ValueError, match="unknown backend 'tgi'"):
        make_backend("tgi", spec, tokenizer)


def test_row_seeds_are_stable_and_distinct():
    seeds = {row_seed(0, f"p{i}") for i in range(1000)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert row_seed(3, "p1/s0") == row_seed(3, "p1/s0") != row_seed(4, "p1/s0")


def test_vllm_backend_rejects_cpu_unsupported_head_size(saved_pair, tokenizer, tmp_path):
    # the tiny pair has head size 8; vLLM's CPU attention starts at 32
    fake_python = tmp_path / "python"
    fake_python.touch()
    spec = ModelsConfig(root=str(saved_pair)).spec("base")
    backend = VLLMBackend(spec, tokenizer.eos_token_id, python=fake_python)
    with pytest.raises(ValueError, match=r"head size 8 is not supported by vLLM's CPU attention"):
        backend.generate([[1, 2]], ["k"], SamplingParams(max_new_tokens=2))
