"""Attention weights: the model's own maps, and an independent softmax(q k^T / sqrt(d))."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tinylm.errors import TinylmError
from tinylm.inspect.attention import attention_maps, plot_attention, save_attention_arrays
from tinylm.inspect.loaded import LoadedModel

TEXT = "a cat sat"


def weights_from_q_and_k(model, ids: list[int]) -> list[np.ndarray]:
    """Each layer's weights ``(n_head, T, T)`` recomputed from the inputs its attention sees.

    A hook records what enters each attention module; q and k are then formed from
    ``w_q`` and ``w_k`` here, key heads shared by ``n_head // kv_heads`` query heads.
    """
    seen = []
    hooks = [
        block.attn.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
        for block in model.blocks
    ]
    try:
        with torch.no_grad():
            model(torch.tensor([ids]))
    finally:
        for hook in hooks:
            hook.remove()
    c = model.config
    T, d = len(ids), c.head_dim
    out = []

    def project(linear, x):
        bias = None if linear.bias is None else linear.bias.detach().double()
        return x @ linear.weight.detach().double().T + (0 if bias is None else bias)

    for block, x in zip(model.blocks, seen, strict=True):
        x = x[0].double()
        q = project(block.attn.w_q, x).view(T, c.n_head, d).transpose(0, 1)
        k = project(block.attn.w_k, x).view(T, c.kv_heads, d).transpose(0, 1)
        k = k[[h * c.kv_heads // c.n_head for h in range(c.n_head)]]
        scores = q @ k.transpose(1, 2) / math.sqrt(d)
        future = torch.ones(T, T, dtype=torch.bool).triu(1)
        out.append(torch.softmax(scores.masked_fill(future, -math.inf), -1).numpy())
    return out


@pytest.mark.parametrize("overrides", [{}, {"n_kv_head": 2, "bias": False}, {"n_kv_head": 1}])
def test_weights_equal_an_independent_computation(build_run, overrides):
    loaded = LoadedModel.from_run(build_run("attn", position="learned", **overrides))
    maps = attention_maps(loaded, TEXT)
    ids = loaded.encode(TEXT)
    expected = weights_from_q_and_k(loaded.model, ids)
    assert maps.weights.shape == (2, 4, len(ids), len(ids))
    for layer in range(2):
        np.testing.assert_allclose(maps.weights[layer], expected[layer], atol=1e-5)
    with torch.no_grad():
        own = loaded.model.attention_maps(torch.tensor([ids]))
    np.testing.assert_array_equal(maps.weights, np.stack([w[0].numpy() for w in own]))


def test_rows_sum_to_one_and_the_future_is_zero(loaded):
    maps = attention_maps(loaded, TEXT)
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
    T = len(maps.ids)
    assert np.all(maps.weights[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)
    assert maps.weights[..., 0, 0] == pytest.approx(1.0)  # the first token sees only itself
    assert maps.pieces[0] == "<BOS>" and "".join(maps.pieces[1:]) == TEXT


def test_one_layer_and_head_are_slices_of_all(loaded):
    every = attention_maps(loaded, TEXT)
    one = attention_maps(loaded, TEXT, layer=1, head=2)
    assert one.layers == [1] and one.heads == [2]
    np.testing.assert_array_equal(one.weights[0, 0], every.weights[1, 2])
    assert attention_maps(loaded, TEXT, head=3).weights.shape[:2] == (2, 1)


@pytest.mark.parametrize(
    ("layer", "head", "message"),
    [(2, None, "layer 2 does not exist"), (-1, None, "layer -1"), (None, 4, "head 4")],
)
def test_layer_or_head_out_of_range(loaded, layer, head, message):
    with pytest.raises(TinylmError, match=message):
        attention_maps(loaded, TEXT, layer=layer, head=head)


def test_arrays_and_plot_are_written(loaded, tmp_path, assert_png):
    from tinylm.inspect.figures import save_png

    maps = attention_maps(loaded, TEXT, head=1)
    npy = save_attention_arrays(maps, tmp_path / "a.npy")
    np.testing.assert_array_equal(np.load(npy), maps.weights)
    sidecar = json.loads((tmp_path / "a.json").read_text())
    assert sidecar["tokens"] == maps.pieces and sidecar["heads"] == [1]
    fig = plot_attention(maps)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("layer")]
    assert [ax.get_title() for ax in panels] == [f"layer {n}, head 1" for n in range(2)]
    assert panels[-1].get_xlabel() == "key: token attended to"
    ticks = [t.get_text() for t in panels[0].get_yticklabels()]
    assert ticks == ["<BOS>", "a", "␣", "c", "a", "t", "␣", "s", "a", "t"]
    assert_png(save_png(fig, tmp_path / "a.png"))
