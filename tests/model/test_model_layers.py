"""Norms, activations and feed-forward layers against torch's own implementations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinylm.model.feedforward import (
    FeedForward,
    SwiGLU,
    build_feedforward,
    gelu,
    gelu_tanh,
    relu,
    silu,
)
from tinylm.model.gpt import GPT
from tinylm.model.norms import LayerNorm, RMSNorm, build_norm


def test_layernorm_matches_torch():
    x = torch.randn(3, 5, 16) * 4 + 2
    ours = LayerNorm(16, eps=1e-5)
    ref = nn.LayerNorm(16, eps=1e-5)
    with torch.no_grad():  # non-trivial gain and bias, the same in both
        ours.weight.copy_(torch.randn(16))
        ours.bias.copy_(torch.randn(16))
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_layernorm_without_gain_or_bias_matches_torch():
    x = torch.randn(4, 16)
    ours = LayerNorm(16, gain=False, bias=False)
    assert list(ours.parameters()) == []
    ref = nn.LayerNorm(16, elementwise_affine=False)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_rmsnorm_matches_torch_and_formula():
    x = torch.randn(3, 5, 16) * 3 + 1
    ours = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(16))
    formula = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * ours.weight
    torch.testing.assert_close(ours(x), formula, atol=1e-5, rtol=1e-5)
    if hasattr(nn, "RMSNorm"):  # torch >= 2.4
        ref = nn.RMSNorm(16, eps=1e-6)
        with torch.no_grad():
            ref.weight.copy_(ours.weight)
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_rmsnorm_does_not_subtract_the_mean():
    x = torch.full((1, 8), 3.0)  # LayerNorm would map a constant vector to zeros
    torch.testing.assert_close(RMSNorm(8, gain=False)(x), torch.ones(1, 8), atol=1e-5, rtol=0)


def test_norm_without_gain_has_no_parameters(tiny_config):
    assert list(build_norm(tiny_config(norm="rmsnorm", norm_gain=False)).parameters()) == []
    ln = build_norm(tiny_config(norm="layernorm", norm_gain=False, bias=True))
    assert [n for n, _ in ln.named_parameters()] == ["bias"]


@pytest.mark.parametrize("norm_cls", [RMSNorm, LayerNorm])
def test_norms_keep_low_precision_dtype(norm_cls):
    x = torch.randn(2, 16, dtype=torch.bfloat16)
    y = norm_cls(16).to(torch.bfloat16)(x)
    assert y.dtype == torch.bfloat16
    ref = norm_cls(16)(x.float())
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("norm_cls", [RMSNorm, LayerNorm])
def test_norm_gradcheck(norm_cls):
    norm = norm_cls(6).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(norm, (x,))


def _rms_reference(x, gain, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain


def _layer_reference(x, gain, bias, eps):
    centred = x - x.mean(-1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps) * gain + bias


@pytest.mark.parametrize("kernels", ["explicit", "fused"])
@pytest.mark.parametrize("norm", ["rmsnorm", "layernorm"])
def test_every_norm_of_a_model_uses_the_configured_eps(tiny_config, norm, kernels):
    # An imported Llama carries rms_norm_eps = 1e-6, not tinylm's default 1e-5. On
    # activations of size 1e-3 the mean square (~1e-6) is the size of eps, so the two
    # values give outputs far apart: the reference must match 1e-6 and not 1e-5.
    config = tiny_config(norm=norm, norm_eps=1e-6, kernels=kernels, embedding_norm=True)
    model = GPT(config).double()
    norms = [m for m in model.modules() if isinstance(m, (RMSNorm, LayerNorm))]
    assert len(norms) == 2 * config.n_layer + 2  # two per block, the final and embedding norms
    x = 1e-3 * torch.randn(3, 5, config.n_embd, dtype=torch.float64)
    for norm_layer in norms:
        with torch.no_grad():
            for param in norm_layer.parameters():
                param.copy_(torch.randn_like(param))
        gain = norm_layer.weight
        if norm == "rmsnorm":
            expected, default = (_rms_reference(x, gain, eps) for eps in (1e-6, 1e-5))
        else:
            bias = norm_layer.bias
            expected, default = (_layer_reference(x, gain, bias, eps) for eps in (1e-6, 1e-5))
        assert not torch.allclose(expected, default, rtol=0.1, atol=0)
        torch.testing.assert_close(norm_layer(x), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("ours", "ref"),
    [
        (relu, torch.relu),
        (gelu, F.gelu),
        (gelu_tanh, lambda x: F.gelu(x, approximate="tanh")),
        (silu, F.silu),
    ],
)
def test_activations_match_torch(ours, ref):
    x = torch.linspace(-8, 8, 1001, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))
    x32 = torch.randn(1000)
    torch.testing.assert_close(ours(x32), ref(x32))


def test_feedforward_is_expand_activate_contract(tiny_config):
    config = tiny_config(activation="gelu", bias=True)
    ffn = FeedForward(config)
    assert ffn.w1.weight.shape == (64, 16) and ffn.w2.weight.shape == (16, 64)
    x = torch.randn(2, 3, 16)
    expected = F.linear(F.gelu(F.linear(x, ffn.w1.weight, ffn.w1.bias)), ffn.w2.weight, ffn.w2.bias)
    torch.testing.assert_close(ffn(x), expected)


def test_swiglu_formula(tiny_config):
    config = tiny_config(activation="swiglu", bias=False, multiple_of=8)
    ffn = build_feedforward(config)
    assert isinstance(ffn, SwiGLU)
    hidden = config.ffn_hidden  # int(2 * 64 / 3) = 42 -> 48
    assert hidden == 48 and ffn.w.weight.shape == (48, 16) and ffn.w2.weight.shape == (16, 48)
    x = torch.randn(2, 3, 16)
    gate = F.silu(x @ ffn.w.weight.T)
    expected = (gate * (x @ ffn.v.weight.T)) @ ffn.w2.weight.T
    torch.testing.assert_close(ffn(x), expected)
