"""Token and position embeddings, and RoPE against a complex-number reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.errors import TinylmError
from tinylm.model import apply_rope
from tinylm.model.embeddings import (
    SinusoidalPositionEmbedding,
    TokenEmbedding,
    build_position_embedding,
    sinusoidal_table,
)


def rope_reference(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE as the paper states it: pairs are complex numbers multiplied by e^(i m theta_j)."""
    d = x.shape[-1]
    as_complex = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    freqs = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.outer(positions.double(), freqs)
    rotated = as_complex * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).flatten(-2)


def test_token_embedding_is_a_row_lookup():
    emb = TokenEmbedding(7, 5)
    torch.nn.init.normal_(emb.weight)
    idx = torch.tensor([[3, 0, 6], [1, 1, 2]])
    one_hot = F.one_hot(idx, 7).float()
    torch.testing.assert_close(emb(idx), one_hot @ emb.weight)


def test_sinusoidal_table_matches_the_formula():
    table = sinusoidal_table(10, 6)
    for pos in range(10):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert sinusoidal_table(4, 5).shape == (4, 5)  # odd widths work too


def test_position_embedding_kinds(tiny_config):
    learned = build_position_embedding(tiny_config(position="learned"))
    assert learned.weight.shape == (12, 16) and learned.weight.requires_grad
    sinusoidal = build_position_embedding(tiny_config(position="sinusoidal"))
    assert isinstance(sinusoidal, SinusoidalPositionEmbedding)
    assert list(sinusoidal.parameters()) == [] and "table" not in sinusoidal.state_dict()
    positions = torch.tensor([0, 5, 11])
    torch.testing.assert_close(sinusoidal(positions), sinusoidal_table(12, 16)[positions])
    assert build_position_embedding(tiny_config(position="rope")) is None
    assert build_position_embedding(tiny_config(position="none")) is None


@pytest.mark.parametrize("theta", [10000.0, 500.0])
def test_rope_matches_complex_reference(theta):
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    positions = torch.tensor([0, 1, 2, 5, 9, 100, 4000])
    torch.testing.assert_close(apply_rope(x, positions, theta), rope_reference(x, positions, theta))
    x32 = x.float()
    out32 = apply_rope(x32, positions, theta)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(
        out32.double(), rope_reference(x32, positions, theta), atol=1e-5, rtol=1e-5
    )


def test_rope_is_a_rotation():
    x = torch.randn(4, 16, dtype=torch.float64)
    positions = torch.arange(4)
    out = apply_rope(x, positions)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # lengths unchanged
    torch.testing.assert_close(out[0], x[0])  # position 0 is not rotated


def test_rope_offsets_match_full_sequence():
    """What the KV cache relies on: rotating a suffix with its true positions."""
    x = torch.randn(1, 2, 10, 8)
    full = apply_rope(x, torch.arange(10))
    suffix = apply_rope(x[:, :, 6:], torch.arange(6, 10))
    torch.testing.assert_close(suffix, full[:, :, 6:])


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(0, 5000),
    n=st.integers(0, 5000),
    shift=st.integers(-5000, 5000),
)
def test_rope_scores_depend_only_on_relative_distance(m, n, shift):
    if m + shift < 0 or n + shift < 0:
        shift = -min(m, n)
    gen = torch.Generator().manual_seed(m * 7919 + n)
    q = torch.randn(1, 16, dtype=torch.float64, generator=gen)
    k = torch.randn(1, 16, dtype=torch.float64, generator=gen)

    def score(pos_q: int, pos_k: int) -> float:
        q_rot = apply_rope(q, torch.tensor([pos_q]))
        k_rot = apply_rope(k, torch.tensor([pos_k]))
        return float((q_rot * k_rot).sum())

    assert score(m, n) == pytest.approx(score(m + shift, n + shift), rel=1e-9, abs=1e-9)


def test_rope_rejects_bad_input():
    with pytest.raises(TinylmError, match="even last dimension"):
        apply_rope(torch.randn(3, 5), torch.arange(3))
    with pytest.raises(TinylmError, match="one position per token"):
        apply_rope(torch.randn(3, 4), torch.arange(4))


def test_rope_gradcheck():
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: apply_rope(t, torch.arange(3, 7)), (x,))


@pytest.mark.parametrize("offset", [0, 5])
def test_tabulated_rotary_equals_apply_rope(offset):
    """The fused path (one complex product, rotations tabulated) is the same rotation."""
    from tinylm.model.rope import Rotary

    x = torch.randn(2, 3, 7, 8, requires_grad=True)
    positions = torch.arange(offset, offset + 7)
    expected = apply_rope(x, positions, 500.0)
    got = Rotary(16, 8, 500.0)(x, positions)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    (g_expected,) = torch.autograd.grad(expected.square().sum(), x)
    (g_got,) = torch.autograd.grad(got.square().sum(), x)
    torch.testing.assert_close(g_got, g_expected, atol=1e-5, rtol=1e-5)


def test_one_rotation_table_serves_every_layer(tiny_config):
    # A long-context model (imported Llamas have 128K positions) holds the table once,
    # not once per layer; the layers still agree with the explicit path's angles.
    from tinylm.model import GPT

    fused = GPT(tiny_config(position="rope", n_layer=3))
    tables = {id(block.attn.rotary.rotations) for block in fused.blocks}
    assert len(tables) == 1
    assert sum(b.numel() for b in fused.buffers()) == fused.blocks[0].attn.rotary.rotations.numel()
    fused = fused.double()
    assert len({id(block.attn.rotary.rotations) for block in fused.blocks}) == 1
    explicit = GPT(tiny_config(position="rope", n_layer=3, kernels="explicit")).double()
    explicit.load_state_dict(fused.state_dict())
    idx = torch.randint(0, 11, (2, 9))
    torch.testing.assert_close(fused(idx)[0], explicit(idx)[0], atol=1e-6, rtol=1e-5)
