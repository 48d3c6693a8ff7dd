"""Turning token ids and positions into vectors.

A token embedding is nothing but a matrix with one row per vocabulary entry;
"embedding" token ``i`` means reading row ``i``. It is equivalent to multiplying
a one-hot vector by the matrix, without building the one-hot vector.

Attention by itself is blind to order (it sees a set of vectors), so the model
needs to be told where each token sits. The additive schemes here build one
vector per position and add it to the token vector:

* ``learned``: a second table, one trainable row per position (GPT-2). It cannot
  represent positions beyond ``block_size``.
* ``sinusoidal``: fixed sines and cosines of geometrically spaced frequencies
  (Vaswani et al., 2017); nothing is learned.
* ``none``: no position signal at all (NoPE). A causal model can still infer
  position, because token ``t`` attends over exactly ``t + 1`` tokens.

RoPE (``rope.py``) takes a different route: nothing is added here, and the query
and key vectors are rotated inside attention instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinylm.model.config import ModelConfig


class TokenEmbedding(nn.Module):
    """A ``(vocab_size, n_embd)`` matrix; the embedding of token ``i`` is row ``i``.

    The rows are read with ``F.embedding`` (``weight[idx]``, as a lookup), not by
    indexing the tensor: both give the same rows, but the backward of plain indexing
    (``index_put_`` with accumulation) adds the gradients of a repeated token in an
    order that varies from run to run when torch uses several threads, so two
    identical runs would differ in the last bits. ``F.embedding``'s backward adds
    them in a fixed order.
    """

    def __init__(self, vocab_size: int, n_embd: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, n_embd))

    def forward(self, idx: Tensor) -> Tensor:
        return F.embedding(idx, self.weight)  # (B, T) ids -> (B, T, n_embd) rows


class LearnedPositionEmbedding(nn.Module):
    """A trainable ``(block_size, n_embd)`` table, indexed by position."""

    def __init__(self, block_size: int, n_embd: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(block_size, n_embd))

    def forward(self, positions: Tensor) -> Tensor:
        return self.weight[positions]


def sinusoidal_table(n_positions: int, dim: int) -> Tensor:
    """``PE[pos, 2i] = sin(pos / 10000^(2i/d))`` and ``PE[pos, 2i+1] = cos(...)``.

    Each pair of features is a clock ticking at its own frequency, so every
    position gets a distinct pattern, and ``PE[pos + k]`` is a fixed linear
    function (a rotation) of ``PE[pos]``, which makes relative offsets easy to read.
    """
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    pair = torch.arange(0, dim, 2, dtype=torch.float64)
    angle = position / (10000.0 ** (pair / dim))  # (n_positions, ceil(dim / 2))
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : dim // 2])  # an odd dim has one sine more
    return table.to(torch.float32)


class SinusoidalPositionEmbedding(nn.Module):
    """The fixed table of ``sinusoidal_table``, stored as a buffer, not a parameter."""

    def __init__(self, block_size: int, n_embd: int) -> None:
        super().__init__()
        # persistent=False: it is recomputed from the config, so keep it out of checkpoints.
        self.register_buffer("table", sinusoidal_table(block_size, n_embd), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        return self.table[positions]


def build_position_embedding(config: ModelConfig) -> nn.Module | None:
    """The additive position embedding, or ``None`` for ``rope`` and ``none``."""
    if config.position == "learned":
        return LearnedPositionEmbedding(config.block_size, config.n_embd)
    if config.position == "sinusoidal":
        return SinusoidalPositionEmbedding(config.block_size, config.n_embd)
    return None
