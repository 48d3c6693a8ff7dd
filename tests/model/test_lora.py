"""LoRA on tinylm's GPT: settings, what trains, the starting point, and merging."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tinylm.errors import TinylmError
from tinylm.model import GPT
from tinylm.model.lora import (
    LoraConfig,
    LoraLinear,
    add_lora,
    has_lora,
    load_lora_state_dict,
    lora_parameters,
    lora_state_dict,
    merge_lora,
)

GPT2_SHAPE = {"position": "learned", "norm": "layernorm", "activation": "gelu", "bias": True}
LLAMA_GQA = {"position": "rope", "norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 2}
SHAPES = {"gpt2": GPT2_SHAPE, "llama-gqa": LLAMA_GQA}


def ids(config, batch=3, length=10):
    return torch.randint(
        0, config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(1)
    )


def randomise_b(model):
    """Non-zero B everywhere, so the adapters change the output (B starts at zero)."""
    with torch.no_grad():
        for p in lora_parameters(model):
            p.copy_(0.05 * torch.randn_like(p))


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rank": 0}, "lora rank must be a positive integer"),
        ({"rank": 2.0}, "lora rank must be a positive integer"),
        ({"alpha": 0}, "lora alpha must be a positive number"),
        ({"alpha": float("nan")}, "lora alpha must be a positive number"),
        ({"dropout": 1.0}, "lora dropout must be in [0, 1)"),
        ({"targets": ()}, "lora targets must be a non-empty list"),
        ({"targets": "attn"}, "lora targets must be a non-empty list"),
        ({"targets": ("attn", "mlp")}, "lora target 'mlp' is not a projection"),
    ],
)
def test_bad_settings_are_refused_in_one_line(fields, message):
    with pytest.raises(TinylmError) as info:
        LoraConfig(**fields)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_settings_round_trip_and_spell_out_groups():
    config = LoraConfig(rank=3, alpha=5.0, dropout=0.1, targets=("ffn", "attn.w_q"))
    assert LoraConfig.from_dict(config.to_dict()) == config
    assert config.scale == 5.0 / 3
    assert config.projections() == ("attn.w_q", "ffn.w1", "ffn.w2", "ffn.w", "ffn.v")
    with pytest.raises(TinylmError, match="unknown lora setting 'rnak'"):
        LoraConfig.from_dict({**config.to_dict(), "rnak": 3})
    with pytest.raises(TinylmError, match="lora setting 'alpha' is missing"):
        LoraConfig.from_dict({"rank": 3, "dropout": 0.0, "targets": ["attn"]})


# -- wrapping and what trains --------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_the_adapted_model_starts_equal_to_the_base(tiny_config, shape):
    config = tiny_config(**SHAPES[shape])
    model = GPT(config).eval()
    x = ids(config)
    before = model(x)[0]
    add_lora(model, LoraConfig(rank=4, alpha=7.0, targets=("attn", "ffn")))
    assert torch.equal(model(x)[0], before)  # B = 0: not merely close, the same numbers


def test_targets_wrap_the_named_projections_of_every_block(tiny_config):
    gpt2 = add_lora(GPT(tiny_config(**GPT2_SHAPE)), LoraConfig(targets=("attn.w_k", "ffn")))
    wrapped = sorted(name for name, m in gpt2.named_modules() if isinstance(m, LoraLinear))
    assert wrapped == [f"blocks.{i}.{p}" for i in (0, 1) for p in ("attn.w_k", "ffn.w1", "ffn.w2")]
    llama = add_lora(GPT(tiny_config(**LLAMA_GQA)), LoraConfig(targets=("attn.w_v", "ffn")))
    wrapped = sorted(name for name, m in llama.named_modules() if isinstance(m, LoraLinear))
    names = ("attn.w_v", "ffn.v", "ffn.w", "ffn.w2")
    assert wrapped == [f"blocks.{i}.{p}" for i in (0, 1) for p in names]
    # GQA: w_v is narrower (2 kv heads of 4 dims), and B follows its output width
    assert llama.blocks[0].attn.w_v.lora_b.shape == (8, 8)


def test_a_target_the_model_lacks_is_refused(tiny_config):
    with pytest.raises(TinylmError, match="lora target 'ffn.w1' is not in this model"):
        add_lora(GPT(tiny_config(**LLAMA_GQA)), LoraConfig(targets=("ffn.w1",)))
    model = add_lora(GPT(tiny_config()), LoraConfig(targets=("attn",)))
    with pytest.raises(TinylmError, match="already has LoRA adapters"):
        add_lora(model, LoraConfig())


@pytest.mark.parametrize("shape", SHAPES)
def test_only_the_adapters_train(tiny_config, shape):
    config = tiny_config(**SHAPES[shape])
    model = GPT(config)
    add_lora(model, LoraConfig(rank=2, alpha=4.0, dropout=0.1))
    adapters = lora_parameters(model)
    adapter_ids = {id(p) for p in adapters}
    base = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in adapter_ids}
    assert base and all(
        not p.requires_grad for n, p in model.named_parameters() if id(p) not in adapter_ids
    )
    assert all(p.requires_grad for p in adapters)
    assert {id(p) for p in model.param_roles().all()} == adapter_ids  # what optimisers see
    before = {id(p): p.detach().clone() for p in adapters}
    optimizer = torch.optim.Adam(lora_parameters(model), lr=1e-2)
    x = ids(config)
    for _ in range(2):  # B moves at step 1; A only once B is non-zero
        _, loss = model(x[:, :-1], x[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, param in model.named_parameters():
        if id(param) in adapter_ids:
            assert not torch.equal(param, before[id(param)]), name
        else:
            assert torch.equal(param, base[name]), name


def test_dropout_touches_only_the_adapter_path(tiny_config):
    config = tiny_config(**GPT2_SHAPE)
    model = GPT(config)
    base_out = model.eval()(ids(config))[0]
    add_lora(model, LoraConfig(rank=2, dropout=0.5))
    model.train()  # B = 0: whatever dropout does to the adapter's input, nothing changes
    assert torch.equal(model(ids(config))[0], base_out)
    randomise_b(model)
    assert not torch.allclose(model(ids(config))[0], model.eval()(ids(config))[0])


# -- merging ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "targets",
    [("attn", "ffn"), ("attn.w_q", "attn.w_v"), ("attn.w_o", "ffn.w2"), ("ffn",)],
)
def test_merged_and_unmerged_give_the_same_logits(tiny_config, shape, targets):
    config = tiny_config(**SHAPES[shape])
    base = GPT(config)
    model = add_lora(
        copy.deepcopy(base), LoraConfig(rank=3, alpha=5.0, dropout=0.2, targets=targets)
    )
    randomise_b(model)
    model.eval()
    x = ids(config)
    unmerged = model(x)[0]
    assert not torch.allclose(unmerged, base.eval()(x)[0], atol=1e-3)  # the adapters matter
    merge_lora(model)
    assert not has_lora(model)
    assert all(type(m) is not LoraLinear for m in model.modules())
    assert model.state_dict().keys() == base.state_dict().keys()
    assert (model(x)[0] - unmerged).abs().max().item() <= 1e-6


def test_merge_adds_scale_times_b_a_to_the_weight(tiny_config):
    """The merged weight against the formula, computed here by hand."""
    model = GPT(tiny_config())
    w_before = model.blocks[1].attn.w_q.weight.detach().clone()
    add_lora(model, LoraConfig(rank=2, alpha=3.0, targets=("attn.w_q",)))
    randomise_b(model)
    layer = model.blocks[1].attn.w_q
    a, b = layer.lora_a.detach().clone(), layer.lora_b.detach().clone()
    merge_lora(model)
    expected = w_before + (3.0 / 2) * (b @ a)
    torch.testing.assert_close(model.blocks[1].attn.w_q.weight, expected, rtol=0, atol=1e-7)
    assert isinstance(model.blocks[1].attn.w_q, nn.Linear)


def test_adapter_tensors_load_back_and_mismatches_are_refused(tiny_config):
    config = tiny_config(**LLAMA_GQA)
    base = GPT(config)
    settings = LoraConfig(rank=2, targets=("attn",))
    trained = add_lora(copy.deepcopy(base), settings)
    randomise_b(trained)
    fresh = add_lora(copy.deepcopy(base), settings)
    load_lora_state_dict(fresh, lora_state_dict(trained))
    x = ids(config)
    assert torch.equal(fresh.eval()(x)[0], trained.eval()(x)[0])
    tensors = lora_state_dict(trained)
    tensors.pop("blocks.1.attn.w_k.lora_b")
    with pytest.raises(TinylmError, match="missing 'blocks.1.attn.w_k.lora_b'"):
        load_lora_state_dict(fresh, tensors)
    wider = add_lora(copy.deepcopy(base), LoraConfig(rank=3, targets=("attn",)))
    with pytest.raises(TinylmError, match=r"blocks.0.attn.w_q.lora_a is \[2, 16\] there"):
        load_lora_state_dict(wider, lora_state_dict(trained))
