"""The whole model against independent re-implementations that share only the weights.

``reference_logits`` rebuilds the forward pass from the state dict with torch's
own functional pieces (``F.layer_norm``, ``F.rms_norm``, ``F.gelu``, complex-number
RoPE, ``F.scaled_dot_product_attention``). ``microgpt_logits`` follows the seed's
microgpt token by token, with Python lists for the keys and values. If the wiring
of GPT (norm placement, residuals, head split, tying) were wrong, these would differ.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from tinylm.model import GPT, ModelConfig
from tinylm.model.config import ACTIVATIONS, NORM_PLACEMENTS, NORMS, POSITIONS

# The reference uses F.rms_norm (torch 2.4) and SDPA's enable_gqa (torch 2.5).
pytestmark = pytest.mark.skipif(
    not hasattr(F, "rms_norm") or tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 5),
    reason="the functional reference needs torch >= 2.5",
)


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """(B, H, T, d): pairs as complex numbers times e^(i * t * theta^(-2j/d))."""
    T, d = x.shape[-2], x.shape[-1]
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.outer(torch.arange(T, dtype=torch.float64), freqs)
    return (
        torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).flatten(-2).to(x.dtype)
    )


def _sinusoid(T: int, d: int) -> torch.Tensor:
    return torch.tensor(
        [
            [
                math.sin(t / 10000 ** (i / d))
                if i % 2 == 0
                else math.cos(t / 10000 ** ((i - 1) / d))
                for i in range(d)
            ]
            for t in range(T)
        ]
    )


def reference_logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    c = model.config
    W = dict(model.state_dict())
    get = W.get
    B, T = idx.shape
    E, H, KV = c.n_embd, c.n_head, c.kv_heads
    d = E // H

    def norm(x: torch.Tensor, prefix: str) -> torch.Tensor:
        weight, bias = get(prefix + ".weight"), get(prefix + ".bias")
        if c.norm == "layernorm":
            return F.layer_norm(x, (E,), weight, bias, c.norm_eps)
        return F.rms_norm(x, (E,), weight, c.norm_eps)

    def linear(x: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.linear(x, W[prefix + ".weight"], get(prefix + ".bias"))

    def attention(x: torch.Tensor, p: str) -> torch.Tensor:
        q = linear(x, p + ".w_q").view(B, T, H, d).transpose(1, 2)
        k = linear(x, p + ".w_k").view(B, T, KV, d).transpose(1, 2)
        v = linear(x, p + ".w_v").view(B, T, KV, d).transpose(1, 2)
        if c.position == "rope":
            q, k = _rope(q, c.rope_theta), _rope(k, c.rope_theta)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return linear(out.transpose(1, 2).reshape(B, T, E), p + ".w_o")

    def ffn(x: torch.Tensor, p: str) -> torch.Tensor:
        if c.activation == "swiglu":
            return linear(F.silu(linear(x, p + ".w")) * linear(x, p + ".v"), p + ".w2")
        act = {
            "relu": F.relu,
            "gelu": F.gelu,
            "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
            "silu": F.silu,
        }[c.activation]
        return linear(act(linear(x, p + ".w1")), p + ".w2")

    x = F.embedding(idx, W["tok_emb.weight"])
    if c.position == "learned":
        x = x + W["pos_emb.weight"][:T]
    elif c.position == "sinusoidal":
        x = x + _sinusoid(T, E)
    if c.embedding_norm:
        x = norm(x, "emb_norm")
    for layer in range(c.n_layer):
        p = f"blocks.{layer}"
        if c.norm_placement == "pre":
            x = x + attention(norm(x, p + ".norm1"), p + ".attn")
            x = x + ffn(norm(x, p + ".norm2"), p + ".ffn")
        else:
            x = norm(x + attention(x, p + ".attn"), p + ".norm1")
            x = norm(x + ffn(x, p + ".ffn"), p + ".norm2")
    if c.final_norm:
        x = norm(x, "final_norm")
    head = W["tok_emb.weight"] if c.tie_embeddings else W["lm_head.weight"]
    return x @ head.T


CASES = list(itertools.product(POSITIONS, ACTIVATIONS, NORMS, NORM_PLACEMENTS))


@pytest.mark.parametrize(("position", "activation", "norm", "placement"), CASES)
def test_matches_functional_reference(tiny_config, position, activation, norm, placement):
    layout = CASES.index((position, activation, norm, placement)) % 3  # vary heads too
    model = GPT(
        tiny_config(
            position=position,
            activation=activation,
            norm=norm,
            norm_placement=placement,
            n_kv_head=[None, 2, 1][layout],
            tie_embeddings=layout != 1,
            bias=layout != 2,
            embedding_norm=layout == 2,
            init_std=0.3,
            multiple_of=8,
        )
    ).eval()
    with torch.no_grad():  # non-trivial norm gains and biases
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.3 * torch.randn_like(param))
    idx = torch.randint(0, 11, (2, 12))
    torch.testing.assert_close(model(idx)[0], reference_logits(model, idx), atol=1e-5, rtol=1e-5)


def test_preset_shapes_match_reference():
    """The llama and gpt2 recipes at a tiny width, through the reference."""
    for preset in ("llama", "gpt2"):
        config = ModelConfig.from_preset(
            preset, vocab_size=13, block_size=10, n_layer=2, n_embd=24, n_head=6, init_std=0.2
        )
        model = GPT(config).eval()
        idx = torch.randint(0, 13, (1, 10))
        torch.testing.assert_close(
            model(idx)[0], reference_logits(model, idx), atol=1e-5, rtol=1e-5
        )


def microgpt_logits(model: GPT, tokens: list[int]) -> list[torch.Tensor]:
    """The seed's microgpt, one token at a time: lists of keys and values per layer."""
    sd = model.state_dict()
    n_head, n_embd = model.config.n_head, model.config.n_embd
    head_dim = n_embd // n_head

    def rmsnorm(x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x).mean() + 1e-5)

    keys, values = (
        [[] for _ in range(model.config.n_layer)],
        [[] for _ in range(model.config.n_layer)],
    )
    out = []
    for pos, token in enumerate(tokens):
        x = rmsnorm(sd["tok_emb.weight"][token] + sd["pos_emb.weight"][pos])
        for li in range(model.config.n_layer):
            p = f"blocks.{li}"
            residual = x
            x = rmsnorm(x)
            q = sd[f"{p}.attn.w_q.weight"] @ x
            keys[li].append(sd[f"{p}.attn.w_k.weight"] @ x)
            values[li].append(sd[f"{p}.attn.w_v.weight"] @ x)
            heads = []
            for h in range(n_head):
                s = slice(h * head_dim, (h + 1) * head_dim)
                scores = torch.stack([q[s] @ k[s] / head_dim**0.5 for k in keys[li]])
                weights = torch.softmax(scores, dim=0)
                heads.append(sum(w * v[s] for w, v in zip(weights, values[li], strict=True)))
            x = sd[f"{p}.attn.w_o.weight"] @ torch.cat(heads) + residual
            residual = x
            x = sd[f"{p}.ffn.w2.weight"] @ torch.relu(sd[f"{p}.ffn.w1.weight"] @ rmsnorm(x))
            x = x + residual
        out.append(sd["lm_head.weight"] @ x)
    return out


def test_microgpt_preset_matches_the_seed_algorithm():
    model = GPT(ModelConfig.from_preset("microgpt", init_std=0.3)).eval()
    tokens = [26, 7, 4, 11, 11, 14, 26, 0, 1]
    logits, _ = model(torch.tensor([tokens]))
    expected = torch.stack(microgpt_logits(model, tokens))
    torch.testing.assert_close(logits[0], expected, atol=1e-5, rtol=1e-5)
