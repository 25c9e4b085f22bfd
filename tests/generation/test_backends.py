"""The generation backends: `hf` matches the sampler, `vllm` says how to get its environment."""

from __future__ import annotations

import pytest

from rlvr.config import from_section
from rlvr.generation.backends import (
    BackendParams,
    BackendResources,
    HFBackend,
    VLLMBackend,
    make_backend,
    row_seed,
)
from rlvr.generation.sampler import SamplingParams, sample
from rlvr.layout import Layout
from rlvr.models.loading import save_model
from rlvr.models.specs import ModelsParams, ModelSpec


@pytest.fixture(scope="module")
def saved_pair(tmp_path_factory, tiny_pair, tokenizer):
    """The tiny pair saved as two HF directories in a layout, like data/models/{base,rl}."""
    layout = Layout(tmp_path_factory.mktemp("data"))
    for name, model in zip(("base", "rl"), tiny_pair, strict=True):
        save_model(model, tokenizer, layout.model_dir(name))
    return layout


def test_backend_config_errors():
    assert from_section(BackendParams, {"backend": {}}, "backend").name == "hf"
    with pytest.raises(ValueError, match="`backend.name`: 'sglang' is not one of"):
        from_section(BackendParams, {"backend": {"name": "sglang"}}, "backend")


def test_hf_backend_matches_the_sampler(saved_pair, tiny_pair, tokenizer):
    prompts = [tokenizer.encode(f"sum {a} {b} {c} :") for a, b, c in [(1, 2, 3), (9, 9, 9)]] * 3
    keys = [f"p{i}/s{i // 2}" for i in range(len(prompts))]
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=12, seed=7)
    spec = ModelsParams().spec("base", saved_pair)
    backend = make_backend(BackendParams(resources=BackendResources(batch_size=4)), spec,
                           tokenizer)
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
    params = BackendParams("vllm", BackendResources(vllm_python=str(tmp_path / "no/python")))
    backend = make_backend(params, spec, tokenizer)
    assert isinstance(backend, VLLMBackend)
    with pytest.raises(ValueError, match=r"no vLLM environment at .*scripts/install_vllm.sh"):
        backend.generate([[1, 2]], ["k"], SamplingParams())


def test_row_seeds_are_stable_and_distinct():
    seeds = {row_seed(0, f"p{i}") for i in range(1000)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert row_seed(3, "p1/s0") == row_seed(3, "p1/s0") != row_seed(4, "p1/s0")


def test_vllm_backend_rejects_cpu_unsupported_head_size(saved_pair, tokenizer, tmp_path):
    # the tiny pair has head size 8; vLLM's CPU attention starts at 32
    fake_python = tmp_path / "python"
    fake_python.touch()
    spec = ModelsParams().spec("base", saved_pair)
    backend = VLLMBackend(spec, tokenizer.eos_token_id, python=fake_python)
    with pytest.raises(ValueError, match=r"head size 8 is not supported by vLLM's CPU attention"):
        backend.generate([[1, 2]], ["k"], SamplingParams(max_new_tokens=2))
