"""Model resolution from the `models` section, and loading checks with errors that name keys."""

from __future__ import annotations

import pytest
import torch

from rlvr.config import from_section
from rlvr.layout import Layout
from rlvr.models.loading import check_lengths, check_pair, load_spec, save_model
from rlvr.models.specs import ModelsParams, ModelSpec, NamedModel, resolve
from rlvr.testbed.model import build_tokenizer

LAYOUT = Layout()


@pytest.fixture(scope="module")
def saved_pair(tmp_path_factory, tiny_pair, tokenizer):
    """The tiny pair saved as two HF directories in a layout, like data/models/{base,rl}."""
    layout = Layout(tmp_path_factory.mktemp("data"))
    for name, model in zip(("base", "rl"), tiny_pair, strict=True):
        save_model(model, tokenizer, layout.model_dir(name))
    return layout


def test_models_config_defaults_to_the_toy_family():
    config = from_section(ModelsParams, {"models": {}}, "models")
    spec, step = config.spec("rl", LAYOUT), config.spec("rl_step_25", LAYOUT)
    assert (spec.path, spec.dtype, spec.device, spec.trust_remote_code, spec.chat_template) == (
        "data/models/rl", "fp32", "cpu", False, True)
    assert step.path == "data/models/rl_steps/rl_step_25"
    entry = resolve("rl_step_25", config, LAYOUT)
    assert (entry.kind, entry.rl_step) == ("checkpoint", 25)
    assert resolve("mine", config, LAYOUT).kind == "user"


def test_models_config_named_entries_override_defaults():
    params = {"models": {"dtype": "bf16", "device": "cuda", "named": {
        "base": {"path": "/m/Qwen2.5-Math-7B", "max_model_len": 4096},
        "rl": {"path": "/m/SimpleRL", "dtype": "fp16", "trust_remote_code": True},
    }}}
    config = from_section(ModelsParams, params, "models")
    base, rl, sft = (config.spec(n, LAYOUT) for n in ("base", "rl", "sft"))
    assert (base.path, base.dtype, base.device, base.max_model_len) == (
        "/m/Qwen2.5-Math-7B", "bf16", "cuda", 4096)
    assert (rl.dtype, rl.trust_remote_code, rl.key) == ("fp16", True, "models.named.rl")
    assert (sft.path, sft.key) == ("data/models/sft", "models")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"dtype": "float8"}, r"`models.dtype`: 'float8' is not one of \['fp32', 'bf16', 'fp16'\]"),
        ({"named": {"rl": {"path": "x", "dtype": "int4"}}}, r"`models.named.rl.dtype`"),
        ({"named": {"rl": {"paht": "x"}}}, r"`models.named.rl.paht`: unknown key"),
        ({"named": {"rl": "data/models/rl"}}, r"`models.named.rl`: 'data/models/rl' is not a "
                                              r"mapping"),
        ({"device": "tpu"}, r"`models.device`: unknown device 'tpu'"),
        ({"named": {"rl": {"device": "tpu"}}}, r"`models.named.rl.device`: unknown device"),
        ({"max_model_len": -1}, r"`models.max_model_len`: -1 is negative"),
        ({"trust_remote_code": "yes"}, r"`models.trust_remote_code`: 'yes' is not true or "
                                       r"false"),
    ],
)
def test_models_config_errors_name_the_key(section, message):
    with pytest.raises(ValueError, match=message):
        from_section(ModelsParams, {"models": section}, "models")


def test_load_spec_missing_directory_names_key_and_path(tmp_path):
    spec = ModelsParams(named={"rl": NamedModel(path=str(tmp_path / "nope"))}).spec("rl", LAYOUT)
    with pytest.raises(FileNotFoundError, match=rf"`models.named.rl.path`: no model at "
                                                rf"{tmp_path / 'nope'}"):
        load_spec(spec)


def test_load_spec_without_tokenizer_names_key_and_path(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path.parent / "models" / "weights_only")
    spec = ModelsParams().spec("weights_only", Layout(tmp_path.parent))
    # a name the pipeline does not build: the key that would name its directory
    with pytest.raises(FileNotFoundError, match=rf"`models.named.weights_only.path`: no "
                       rf"tokenizer in {tmp_path.parent / 'models' / 'weights_only'}"):
        load_spec(spec)


def test_load_spec_dtype_and_round_trip(saved_pair, tiny_pair):
    model, tok = load_spec(ModelsParams(dtype="bf16").spec("base", saved_pair))
    assert model.dtype == torch.bfloat16 and not model.training
    assert tok.get_vocab() == build_tokenizer().get_vocab()
    fp32, _ = load_spec(ModelsParams().spec("base", saved_pair))
    ids = torch.tensor([[1, 5, 20, 30]])
    with torch.no_grad():
        assert torch.equal(fp32(ids).logits, tiny_pair[0](ids).logits)


def test_check_pair_stops_on_different_vocabularies(saved_pair, tmp_path, tiny_model):
    config = ModelsParams(named={"other": NamedModel(path=str(tmp_path / "o"))})
    base = config.spec("base", saved_pair)
    assert check_pair(base, config.spec("rl", saved_pair)).get_vocab() == (
        build_tokenizer().get_vocab())
    other = build_tokenizer()
    other.add_tokens(["<think>"])
    save_model(tiny_model, other, tmp_path / "o")
    n = len(build_tokenizer())
    with pytest.raises(ValueError, match=rf"{saved_pair.model_dir('base')} and {tmp_path / 'o'} "
                                         rf"differ first at id {n}: None vs '<think>'"):
        check_pair(base, config.spec("other", saved_pair))
    nope = ModelsParams(named={"nope": NamedModel(path="/x/y")}).spec("nope", saved_pair)
    with pytest.raises(FileNotFoundError, match=r"`models.named.nope.path`: no model at /x/y"):
        check_pair(base, nope)


def test_check_lengths_errors():
    spec = ModelSpec(name="base", path="p", max_prompt_tokens=4, max_model_len=10,
                     key="models.named.base")
    check_lengths([[1, 2, 3, 4]], 6, spec)
    with pytest.raises(ValueError, match=r"`models.named.base.max_prompt_tokens`: prompt row 1"):
        check_lengths([[1], [1, 2, 3, 4, 5]], 1, spec)
    with pytest.raises(ValueError, match=r"`models.named.base.max_model_len`"):
        check_lengths([[1, 2, 3, 4]], 7, spec)
