"""ModelConfig: validation messages, derived sizes, presets and (de)serialisation."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.errors import TinylmError
from tinylm.model import GPT, PRESETS, ModelConfig
from tinylm.model.config import ACTIVATIONS, NORMS, POSITIONS, field_names


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_embd": 100, "n_head": 3}, "n_embd 100 is not divisible by n_head 3"),
        ({"n_head": 4, "n_kv_head": 3}, "n_kv_head 3 does not divide n_head 4"),
        ({"vocab_size": 0}, "vocab_size must be a positive integer, got 0"),
        ({"n_layer": True}, "n_layer must be a positive integer, got True"),
        ({"block_size": 12.0}, "block_size must be a positive integer, got 12.0"),
        ({"d_ff": -1}, "d_ff must be a positive integer, got -1"),
        ({"position": "rotary"}, "position 'rotary' is not one of: learned, sinusoidal, rope"),
        (
            {"activation": "tanh"},
            "activation 'tanh' is not one of: relu, gelu, gelu_tanh, silu, swiglu",
        ),
        ({"norm": "batchnorm"}, "norm 'batchnorm' is not one of: rmsnorm, layernorm"),
        ({"norm_placement": "middle"}, "norm_placement 'middle' is not one of: pre, post"),
        ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
        ({"init_std": 0}, "init_std must be a positive number, got 0"),
        ({"rope_theta": -1.0}, "rope_theta must be a positive number"),
        ({"rope_theta": float("inf")}, "rope_theta must be a positive number"),
        ({"norm_eps": float("nan")}, "norm_eps must be a positive number"),
        ({"kernels": "triton"}, "kernels 'triton' is not one of: explicit, fused"),
        ({"tie_embeddings": "yes"}, "tie_embeddings must be true or false, got 'yes'"),
        ({"n_embd": 12, "n_head": 4, "position": "rope"}, "rope needs an even head dimension"),
    ],
)
def test_invalid_config_names_the_problem(overrides, message):
    with pytest.raises(TinylmError) as excinfo:
        ModelConfig(**overrides)
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_config_errors_are_value_errors():
    with pytest.raises(ValueError):
        ModelConfig(n_embd=100, n_head=3)


def test_config_is_frozen_and_replace_revalidates():
    config = ModelConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_layer = 2  # type: ignore[misc]
    assert dataclasses.replace(config, n_layer=2).n_layer == 2
    with pytest.raises(TinylmError, match="not divisible"):
        dataclasses.replace(config, n_head=3)


def test_head_layout_defaults_to_mha():
    assert ModelConfig(n_head=4).kv_heads == 4
    assert ModelConfig(n_head=4, n_kv_head=2).kv_heads == 2
    assert ModelConfig(n_head=4, n_kv_head=1).kv_heads == 1
    assert ModelConfig(n_embd=128, n_head=4).head_dim == 32


def test_ffn_hidden_sizes():
    assert ModelConfig(n_embd=128, activation="gelu").ffn_hidden == 512
    assert ModelConfig(n_embd=128, activation="gelu", d_ff=100).ffn_hidden == 100
    # swiglu: int(2 * 4 * 128 / 3) = 341, rounded up to a multiple of 64 -> 384
    assert ModelConfig(n_embd=128, activation="swiglu").ffn_hidden == 384
    assert ModelConfig(n_embd=128, activation="swiglu", multiple_of=1).ffn_hidden == 341
    # llama2.c's stories15M: dim 288, multiple_of 32 -> 768
    assert ModelConfig(n_embd=288, n_head=6, activation="swiglu", multiple_of=32).ffn_hidden == 768
    assert ModelConfig(n_embd=128, activation="swiglu", d_ff=200).ffn_hidden == 200


def test_presets_match_their_descriptions():
    assert set(PRESETS) == {"microgpt", "gpt2", "llama", "small"}
    micro = ModelConfig.from_preset("microgpt")
    assert (micro.n_embd, micro.block_size, micro.n_layer, micro.n_head) == (16, 16, 1, 4)
    assert micro.position == "learned" and micro.activation == "relu"
    assert micro.norm == "rmsnorm" and not micro.norm_gain and not micro.bias
    assert not micro.tie_embeddings

    gpt2 = ModelConfig.from_preset("gpt2")
    assert (gpt2.vocab_size, gpt2.block_size, gpt2.n_layer, gpt2.n_head, gpt2.n_embd) == (
        50257,
        1024,
        12,
        12,
        768,
    )
    assert gpt2.position == "learned" and gpt2.activation == "gelu"
    assert gpt2.norm == "layernorm" and gpt2.norm_placement == "pre"
    assert gpt2.tie_embeddings and gpt2.bias

    llama = ModelConfig.from_preset("llama")
    assert llama.position == "rope" and llama.norm == "rmsnorm"
    assert llama.activation == "swiglu" and 1 < llama.kv_heads < llama.n_head
    assert not llama.bias and not llama.tie_embeddings

    small = ModelConfig.from_preset("small")
    assert (small.n_layer, small.n_head, small.n_embd, small.block_size) == (4, 4, 128, 128)
    assert ModelConfig() == small  # the dataclass defaults are the small preset


def test_from_preset_applies_overrides():
    config = ModelConfig.from_preset("microgpt", vocab_size=65, block_size=32)
    assert config.vocab_size == 65 and config.block_size == 32 and config.n_embd == 16
    assert PRESETS["microgpt"]["vocab_size"] == 27  # the table itself is untouched


def test_unknown_preset_lists_valid_names():
    with pytest.raises(TinylmError) as excinfo:
        ModelConfig.from_preset("gpt5")
    message = str(excinfo.value)
    assert "'gpt5'" in message
    for name in PRESETS:
        assert name in message


def test_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(TinylmError) as excinfo:
        ModelConfig.from_dict({"n_layers": 3})
    message = str(excinfo.value)
    assert "'n_layers'" in message and "n_layer" in message and "vocab_size" in message
    with pytest.raises(TinylmError, match="'n_heads'"):
        ModelConfig.from_preset("small", n_heads=2)


def test_json_round_trip_every_preset():
    for name in PRESETS:
        config = ModelConfig.from_preset(name)
        text = config.to_json()
        assert json.loads(text) == config.to_dict()
        assert ModelConfig.from_json(text) == config
        assert set(config.to_dict()) == set(field_names())


def test_bad_json_is_a_tinylm_error():
    with pytest.raises(TinylmError, match="not valid JSON"):
        ModelConfig.from_json("{n_layer: 2")
    with pytest.raises(TinylmError, match="must be a dict"):
        ModelConfig.from_json("[1, 2]")


@st.composite
def valid_configs(draw):
    n_head = draw(st.sampled_from([1, 2, 4]))
    return ModelConfig(
        vocab_size=draw(st.integers(1, 500)),
        block_size=draw(st.integers(1, 64)),
        n_layer=draw(st.integers(1, 4)),
        n_head=n_head,
        n_embd=n_head * 2 * draw(st.integers(1, 8)),
        n_kv_head=draw(st.sampled_from([None, 1, n_head])),
        position=draw(st.sampled_from(POSITIONS)),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        norm=draw(st.sampled_from(NORMS)),
        dropout=draw(st.floats(0.0, 0.9)),
        rope_theta=draw(st.floats(1.0, 1e6)),
        tie_embeddings=draw(st.booleans()),
    )


@settings(max_examples=50, deadline=None)
@given(valid_configs())
def test_json_round_trip_property(config):
    assert ModelConfig.from_json(config.to_json()) == config
    assert ModelConfig.from_dict(config.to_dict()) == config


# -- the retired attention switch ------------------------------------------------------


def _old_model(tiny_config, attention: str, kernels: str) -> GPT:
    """What today's main built for ``attention=..., kernels=...``: each attention layer
    followed ``attention``, every other op ``kernels``."""
    model = GPT(tiny_config(kernels=kernels, position="rope", init_std=0.3)).double()
    for block in model.blocks:
        block.attn.fused = attention == "fused"
    return model


@pytest.mark.parametrize(
    ("attention", "kernels", "now"),
    [
        ("explicit", "fused", "explicit"),
        ("fused", "explicit", "explicit"),
        ("explicit", "explicit", "explicit"),
        ("fused", "fused", "fused"),
    ],
)
def test_an_old_config_with_both_switches_loads_with_a_note_and_the_same_logits(
    tiny_config, attention, kernels, now
):
    old_model = _old_model(tiny_config, attention, kernels)
    old_dict = {**old_model.config.to_dict(), "attention": attention}  # as run.json held it
    with pytest.warns(UserWarning) as caught:
        config = ModelConfig.from_dict(old_dict)
    (note,) = [str(w.message) for w in caught]
    assert note.startswith(
        f"model setting attention={attention} with kernels={kernels} is read as kernels={now}:"
    )
    assert "\n" not in note
    assert config.kernels == now and "attention" not in config.to_dict()

    model = GPT(config).double()
    model.load_state_dict(old_model.state_dict())
    # whichever part the old run wrote out is written out still
    assert all(block.attn.fused == (now == "fused") for block in model.blocks)
    idx = torch.randint(0, 11, (2, 12))
    before, after = old_model(idx)[0], model(idx)[0]
    written_out = _old_model(tiny_config, "explicit", "explicit")
    written_out.load_state_dict(old_model.state_dict())
    # fused and written-out differ by float rounding (the fused RoPE table is float32)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(after, written_out(idx)[0], atol=1e-6, rtol=1e-5)
    if now == "explicit":  # the explicit formulas, bit for bit
        assert torch.equal(after, written_out(idx)[0])
    if attention == kernels:  # one switch before too: nothing changed at all
        assert torch.equal(after, before)


@pytest.mark.parametrize("attention", ["explicit", "fused"])
def test_the_old_spelling_alone_is_the_one_switch(attention):
    with pytest.warns(UserWarning, match=f"attention={attention} is read as kernels={attention}"):
        config = ModelConfig.from_preset("small", attention=attention)
    assert config.kernels == attention


def test_today_spelling_gives_no_note_and_the_old_is_checked():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ModelConfig.from_dict({"kernels": "explicit"}).kernels == "explicit"
    with pytest.raises(TinylmError, match=r"^attention 'flash' is not one of: explicit, fused$"):
        ModelConfig.from_dict({"attention": "flash"})
    with pytest.raises(TypeError):  # the field itself is gone: one switch, kernels
        ModelConfig(attention="explicit")  # type: ignore[call-arg]
