"""Attention: the explicit formula against torch's SDPA, masks, and GQA/MQA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tinylm.model import GPT, scaled_dot_product_attention
from tinylm.model.attention import CausalSelfAttention, causal_mask, repeat_kv
from tinylm.model.kv_cache import KVCache


def test_sdpa_matches_torch_causal():
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    mask = torch.ones(7, 7, dtype=torch.bool).tril()
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert weights.shape == (2, 3, 7, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 7))
    assert torch.all(weights.masked_select(~mask) == 0)  # exactly zero above the diagonal


def test_sdpa_weights_are_softmax_of_scaled_scores():
    q, k, v = torch.randn(4, 8), torch.randn(5, 8), torch.randn(5, 3)
    out, weights = scaled_dot_product_attention(q, k, v)
    expected = torch.softmax(q @ k.T / 8**0.5, dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, expected @ v)


def test_sdpa_arbitrary_mask_and_different_lengths():
    q = torch.randn(2, 2, 3, 8)  # 3 queries ...
    k, v = torch.randn(2, 2, 9, 8), torch.randn(2, 2, 9, 4)  # ... against 9 keys
    mask = torch.rand(3, 9) > 0.4
    mask[:, 0] = True  # every query may see at least one key
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert out.shape == (2, 2, 3, 4)
    assert torch.all(weights[..., ~mask] == 0)


def test_sdpa_without_mask_matches_torch():
    q, k, v = torch.randn(1, 6, 8), torch.randn(1, 10, 8), torch.randn(1, 10, 8)
    out, _ = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_sdpa_gradcheck():
    q, k, v = (torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.ones(4, 4, dtype=torch.bool).tril()
    assert torch.autograd.gradcheck(
        lambda a, b, c: scaled_dot_product_attention(a, b, c, mask)[0], (q, k, v)
    )


def test_causal_mask_with_cache_offset():
    assert causal_mask(3, 3).tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]
    # two new queries at positions 3 and 4, after 3 cached keys
    assert causal_mask(2, 5).tolist() == [
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]


def test_repeat_kv_lines_query_heads_up_with_their_group():
    kv = torch.arange(2).float().view(1, 2, 1, 1)  # head 0 holds 0, head 1 holds 1
    assert repeat_kv(kv, 3).flatten().tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_explicit_and_fused_attention_agree(tiny_config, position, n_kv_head):
    config = tiny_config(position=position, n_kv_head=n_kv_head, kernels="explicit")
    explicit = CausalSelfAttention(config)
    fused = CausalSelfAttention(tiny_config(position=position, n_kv_head=n_kv_head))
    fused.load_state_dict(explicit.state_dict())
    x, positions = torch.randn(3, 10, 16), torch.arange(10)
    out_explicit, weights = explicit(x, positions, need_weights=True)
    out_fused, none = fused(x, positions)
    assert none is None and weights.shape == (3, 4, 10, 10)
    torch.testing.assert_close(out_explicit, out_fused, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_kv_head", [2, 1])
@pytest.mark.parametrize("padded", [False, True])
def test_one_cached_query_under_gqa_matches_the_explicit_formula(tiny_config, n_kv_head, padded):
    """The fused decode step stacks a group's query heads instead of repeating K/V heads."""
    config = tiny_config(position="rope", n_kv_head=n_kv_head, kernels="explicit")
    explicit = CausalSelfAttention(config)
    fused = CausalSelfAttention(tiny_config(position="rope", n_kv_head=n_kv_head))
    fused.load_state_dict(explicit.state_dict())
    prompt, new = torch.randn(3, 7, 16), torch.randn(3, 1, 16)
    mask = None
    if padded:  # each row hides a different number of leading (pad) keys
        valid = torch.arange(8)[None, :] >= torch.tensor([[0], [2], [5]])
        mask = valid[:, None, None, :]
    outputs = []
    for layer in (explicit, fused):
        cache = KVCache(1, 3, config.kv_heads, 12, config.head_dim)
        layer(prompt, torch.arange(7), cache)  # fill positions 0..6 (causal, unpadded)
        cache.advance(7)
        out, _ = layer(new, torch.tensor([7]), cache, attn_mask=mask)
        outputs.append(out)
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)


def _mha_state_from_gqa(state: dict, config) -> dict:
    """Copy of a GQA model's weights with each K/V head duplicated for its query heads."""
    n_rep, head_dim = config.n_head // config.kv_heads, config.head_dim
    out = {}
    for name, tensor in state.items():
        if name.endswith(("attn.w_k.weight", "attn.w_v.weight", "attn.w_k.bias", "attn.w_v.bias")):
            per_head = tensor.unflatten(0, (config.kv_heads, head_dim))
            tensor = per_head.repeat_interleave(n_rep, dim=0).flatten(0, 1)
        out[name] = tensor
    return out


@pytest.mark.parametrize("n_kv_head", [2, 1])
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_gqa_equals_mha_with_repeated_kv_weights(tiny_config, n_kv_head, position):
    gqa_config = tiny_config(n_kv_head=n_kv_head, position=position)
    gqa = GPT(gqa_config)
    assert gqa.blocks[0].attn.w_k.weight.shape == (n_kv_head * 4, 16)
    mha = GPT(tiny_config(n_kv_head=None, position=position))
    mha.load_state_dict(_mha_state_from_gqa(gqa.state_dict(), gqa_config))
    idx = torch.randint(0, 11, (2, 12))
    torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], atol=1e-5, rtol=1e-5)


def test_gqa_with_n_kv_head_equal_n_head_is_mha(tiny_config):
    mha = GPT(tiny_config(n_kv_head=None))
    gqa = GPT(tiny_config(n_kv_head=4))
    gqa.load_state_dict(mha.state_dict())  # identical parameter shapes
    idx = torch.randint(0, 11, (2, 12))
    torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], atol=0, rtol=0)
