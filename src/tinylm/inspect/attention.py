"""Where each token looks: the attention weights of every layer and head.

Row ``i`` of a head's weight matrix is how token ``i`` (the query) spreads its
attention over tokens ``0 .. i`` (the keys); each row sums to 1. Everything above
the diagonal is zero because the model is causal: a token never sees the future.
The heatmaps draw that empty triangle in grey so the causal mask is visible
rather than mistaken for "no attention".

The weights come from ``GPT.attention_maps``, which runs the written-out attention
whatever ``config.kernels`` says (the fused kernel never forms the matrix).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinylm.fileio import atomic_open, atomic_write
from tinylm.inspect.figures import new_figure, quoted, token_labels
from tinylm.inspect.loaded import LoadedModel

#: Beyond this many tokens, tick labels are thinned so they do not overlap.
MAX_TICKS = 48


@dataclass(frozen=True)
class AttentionMaps:
    """Attention weights ``(len(layers), len(heads), T, T)``: ``[l, h, query, key]``."""

    text: str
    ids: list[int]
    pieces: list[str]
    layers: list[int]
    heads: list[int]
    weights: np.ndarray
    label: str


def attention_maps(
    loaded: LoadedModel, text: str, layer: int | None = None, head: int | None = None
) -> AttentionMaps:
    """The weights of one layer / head, or of all of them (``None``), for ``text``."""
    loaded.check_layer(layer)
    loaded.check_head(head)
    ids = loaded.encode(text)
    with torch.no_grad():
        per_layer = loaded.model.attention_maps(loaded.as_batch(ids))
    layers = list(range(len(per_layer))) if layer is None else [layer]
    heads = list(range(loaded.config.n_head)) if head is None else [head]
    weights = np.stack([per_layer[n][0, heads].float().cpu().numpy() for n in layers])
    return AttentionMaps(text, ids, loaded.pieces(ids), layers, heads, weights, loaded.label)


def save_attention_arrays(maps: AttentionMaps, npy_path: str | os.PathLike) -> Path:
    """The raw weights as ``.npy`` and, beside it, a ``.json`` naming the axes and tokens."""
    npy_path = Path(npy_path)
    with atomic_open(npy_path, "wb") as handle:
        np.save(handle, maps.weights.astype(np.float32))
    sidecar = {
        "axes": ["layer", "head", "query token", "key token"],
        "layers": maps.layers,
        "heads": maps.heads,
        "tokens": maps.pieces,
        "ids": maps.ids,
        "text": maps.text,
        "run": maps.label,
    }
    atomic_write(npy_path.with_suffix(".json"), json.dumps(sidecar, indent=1) + "\n")
    return npy_path


def plot_attention(maps: AttentionMaps):
    """One heatmap per layer (rows) and head (columns), tokens on both axes."""
    n_rows, n_cols = len(maps.layers), len(maps.heads)
    T = len(maps.ids)
    panel = min(7.0, max(2.4, 0.14 * T + 1.4))
    # Room beyond the panels for the titles, the token labels and the colour bar.
    fig = new_figure(panel * n_cols + 1.8, panel * n_rows + 1.9)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey=True)
    labels = token_labels(maps.pieces)
    step = max(1, -(-T // MAX_TICKS))
    ticks = list(range(0, T, step))
    # Above the diagonal is masked (causal), not zero attention: draw it in grey.
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    # The axes are shared: ticks set on one panel apply to all (and setting them on
    # each would redo every panel each time).
    font = 8 if T <= 32 else 6
    rotation = 90 if max(len(label) for label in labels) > 2 else 0  # short labels stay upright
    axes[0][0].set_xticks(ticks, [labels[t] for t in ticks])
    axes[0][0].set_yticks(ticks, [labels[t] for t in ticks])
    image = None
    for r, layer in enumerate(maps.layers):
        for c, head in enumerate(maps.heads):
            ax = axes[r][c]
            shown = np.ma.masked_array(maps.weights[r, c], mask=future)
            image = ax.imshow(shown, cmap=_colour_map(), vmin=0.0, vmax=1.0, aspect="equal")
            ax.set_title(f"layer {layer}, head {head}", fontsize=9)
            ax.tick_params(length=2, labelsize=font)
            ax.tick_params(axis="x", labelrotation=rotation)
            if r == n_rows - 1:
                ax.set_xlabel("key: token attended to")
            if c == 0:
                ax.set_ylabel("query: token attending")
    fig.colorbar(image, ax=axes, shrink=min(1.0, 3.0 / max(n_rows, 1)) * 0.8, label="weight")
    fig.suptitle(
        f"Attention weights for {quoted(maps.text)} (rows sum to 1; grey: future, masked)\n"
        f"{maps.label}",
        fontsize=11,
    )
    return fig


def _colour_map():
    from matplotlib import colormaps

    return colormaps["viridis"].with_extremes(bad="#d9d9d9")
