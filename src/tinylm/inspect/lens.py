"""The logit lens: what the residual stream "believes" after each layer.

Every block adds its output to the residual stream, and only at the end does the
model read that stream out, through the final norm and ``lm_head``, as next-token
logits. The logit lens (nostalgebraist, 2020) applies the same read-out to the
stream after the embeddings and after every block, as if the model stopped there.
Watching the top guess change from layer to layer shows where a prediction forms:
early layers often guess the current token or a frequent one, later layers
sharpen towards the answer. The last layer's read-out is exactly the model's
own logits.

The stream is computed here by running the model's embedding, blocks and final
norm in order, the same steps as its forward pass, but keeping every
intermediate state. (For a post-norm model each block already ends in a norm;
the final norm, if any, is still applied before reading out.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tinylm.errors import TinylmError
from tinylm.inspect.figures import new_figure, quoted, token_label, token_labels
from tinylm.inspect.loaded import LoadedModel
from tinylm.inspect.tables import format_table
from tinylm.inspect.tokens import visible


@dataclass(frozen=True)
class LogitLens:
    """Top-``k`` read-outs ``(stages, T, k)``; stage 0 is the embeddings, stage ``n`` layer ``n-1``.

    ``top_ids[s, t]`` are the ``k`` likeliest next tokens after position ``t`` if
    the model stopped at stage ``s``; ``top_probs`` their probabilities.
    """

    text: str
    ids: list[int]
    pieces: list[str]
    stages: list[str]
    top_ids: np.ndarray
    top_probs: np.ndarray
    top_pieces: list[list[list[str]]]
    label: str


def residual_states(model, idx: Tensor) -> list[Tensor]:
    """The residual stream ``(B, T, n_embd)`` after the embeddings and after each block."""
    T = idx.shape[1]
    positions = torch.arange(T, device=idx.device)
    x = model.tok_emb(idx)
    if model.pos_emb is not None:
        x = x + model.pos_emb(positions)
    if model.emb_norm is not None:
        x = model.emb_norm(x)
    states = [x]
    for block in model.blocks:
        x, _ = block(x, positions)
        states.append(x)
    return states


def read_out(model, state: Tensor) -> Tensor:
    """Logits from a residual state: the final norm (if the model has one), then ``lm_head``."""
    if model.final_norm is not None:
        state = model.final_norm(state)
    return model.lm_head(state)


def logit_lens(loaded: LoadedModel, text: str, k: int = 3) -> LogitLens:
    """The top ``k`` next-token guesses at every position, read out after every layer."""
    if k < 1:
        raise TinylmError(f"k (guesses per layer) must be at least 1, got {k}")
    ids = loaded.encode(text)
    model = loaded.model
    k = min(k, loaded.config.vocab_size)
    tops, probs = [], []
    with torch.no_grad():
        for state in residual_states(model, loaded.as_batch(ids)):
            # One stage at a time: (T, vocab) each, never (stages, T, vocab) at once.
            p = torch.softmax(read_out(model, state)[0].float(), dim=-1)
            values, indices = p.topk(k, dim=-1)
            tops.append(indices.cpu().numpy())
            probs.append(values.cpu().numpy())
    top_ids = np.stack(tops)
    stages = ["embeddings"] + [f"layer {n}" for n in range(loaded.config.n_layer)]
    top_pieces = [[loaded.pieces(row) for row in stage] for stage in top_ids]
    return LogitLens(
        text, ids, loaded.pieces(ids), stages, top_ids, np.stack(probs), top_pieces, loaded.label
    )


def _positions(lens: LogitLens, last: int | None) -> list[int]:
    T = len(lens.ids)
    return list(range(T if last is None else max(0, T - last), T))


def format_lens_table(lens: LogitLens, last: int | None = 8) -> str:
    """Rows: stages; columns: the last ``last`` input tokens; cells: top guess and probability.

    A column headed ``'e'`` shows what each stage predicts comes *after* that ``e``.
    """
    columns = _positions(lens, last)
    headers = ["read out after"] + [visible(lens.pieces[t], spaces=True) for t in columns]
    rows = [
        [stage]
        + [
            f"{visible(lens.top_pieces[s][t][0], spaces=True)} {lens.top_probs[s, t, 0]:.2f}"
            for t in columns
        ]
        for s, stage in enumerate(lens.stages)
    ]
    return format_table(headers, rows)


def format_lens_last(lens: LogitLens) -> str:
    """The last position in full: each stage's ``k`` guesses with probabilities."""
    t = len(lens.ids) - 1
    k = lens.top_ids.shape[2]
    rows = [
        [stage]
        + [
            f"{visible(lens.top_pieces[s][t][j], spaces=True)} {lens.top_probs[s, t, j]:.3f}"
            for j in range(k)
        ]
        for s, stage in enumerate(lens.stages)
    ]
    return format_table(["after"] + [f"guess {j + 1}" for j in range(k)], rows)


def plot_logit_lens(lens: LogitLens, last: int | None = 16):
    """A grid of stages x positions, coloured by the top guess's probability, guess written in."""
    columns = _positions(lens, last)
    S, C = len(lens.stages), len(columns)
    fig = new_figure(1.6 + 0.75 * C, 1.6 + 0.45 * S)
    ax = fig.add_subplot(1, 1, 1)
    grid = lens.top_probs[:, columns, 0]
    image = ax.imshow(grid, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", origin="lower")
    for s in range(S):
        for c, t in enumerate(columns):
            ax.text(
                c,
                s,
                token_label(lens.top_pieces[s][t][0]),
                ha="center",
                va="center",
                fontsize=10,
                fontfamily="monospace",
                color="white" if grid[s, c] > 0.6 else "black",
            )
    ax.set_xticks(range(C), token_labels([lens.pieces[t] for t in columns]), fontsize=9)
    ax.set_yticks(range(S), lens.stages, fontsize=9)
    ax.set_xlabel("input token (each column guesses the token after it)")
    ax.set_ylabel("read out after")
    fig.colorbar(image, ax=ax, label="probability of the top guess")
    ax.set_title(
        f"Logit lens: top next-token guess per layer for {quoted(lens.text)}\n{lens.label}"
    )
    return fig
