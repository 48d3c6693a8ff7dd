"""The microgpt model on scalars: every weight and activation is a ``Value``.

This is the same network as tinylm's PyTorch ``GPT`` with the ``microgpt`` preset
(``tinylm.model``), written as lists of numbers and read one token at a time:

1. the token's embedding row plus its position's embedding row, then RMSNorm;
2. ``n_layer`` blocks, each
   * attention: RMSNorm, then query, key and value vectors; the key and value are
     appended to this layer's lists, so the token attends over itself and every
     earlier token of the document (causal by construction, no mask needed), in
     ``n_head`` heads of ``n_embd / n_head`` numbers each; the heads' outputs are
     joined and projected by ``w_o``, and added to the residual stream;
   * MLP: RMSNorm, a linear layer 4x wider, ReLU, back to ``n_embd``, added to
     the residual stream;
3. ``lm_head``: one logit per vocabulary entry.

The weights are named as in ``GPT.state_dict()`` (``tok_emb.weight``,
``blocks.0.attn.w_q.weight`` ...) and stored the same way, a matrix as a list
of rows with ``y = W x``: that is the whole of the conversion between the two
(``tinylm.engines.scratch_convert``). The RMSNorms have no gain, there are no
biases and the output matrix is not tied to the embedding (microgpt's choices).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from tinylm.scratch.value import Value

Matrix = list[list[Value]]
Vector = list[Value]


@dataclass(frozen=True)
class Config:
    """The sizes of a microgpt; the defaults are the seed's (vocabulary: a-z + BOS)."""

    vocab_size: int = 27
    block_size: int = 16  # the most tokens one document may feed the model
    n_layer: int = 1
    n_embd: int = 16
    n_head: int = 4
    norm_eps: float = 1e-5
    init_std: float = 0.08

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_embd", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def parameter_shapes(config: Config) -> dict[str, tuple[int, int]]:
    """Every weight matrix by its ``GPT.state_dict()`` name: ``(rows, columns)``."""
    V, E = config.vocab_size, config.n_embd
    shapes = {"tok_emb.weight": (V, E), "pos_emb.weight": (config.block_size, E)}
    for i in range(config.n_layer):
        for name in ("w_q", "w_k", "w_v", "w_o"):
            shapes[f"blocks.{i}.attn.{name}.weight"] = (E, E)
        shapes[f"blocks.{i}.ffn.w1.weight"] = (4 * E, E)
        shapes[f"blocks.{i}.ffn.w2.weight"] = (E, 4 * E)
    shapes["lm_head.weight"] = (V, E)
    return shapes


# -- the layers -------------------------------------------------------------------------


def linear(x: Vector, w: Matrix) -> Vector:
    """``W x``: one dot product per row of ``w``."""
    return [Value.dot(row, x) for row in w]


def rmsnorm(x: Vector, eps: float) -> Vector:
    """``x / sqrt(mean(x^2) + eps)``: every vector leaves with a root-mean-square of ~1."""
    mean_square = Value.dot(x, x) * (1.0 / len(x))
    scale = (mean_square + eps) ** -0.5
    return [xi * scale for xi in x]


def softmax(logits: Vector) -> Vector:
    """Probabilities from scores. Subtracting the largest score first changes nothing
    mathematically (it cancels in the ratio) but keeps ``exp`` from overflowing."""
    largest = max(v.data for v in logits)
    exps = [(v - largest).exp() for v in logits]
    inverse = Value.sum(exps) ** -1  # one division node shared by all entries
    return [e * inverse for e in exps]


# -- the model --------------------------------------------------------------------------


class MicroGPT:
    """The weights, and the forward pass for one token at a time."""

    def __init__(
        self, config: Config, weights: dict[str, list[list[float]]] | None = None, seed: int = 0
    ) -> None:
        """Random weights (normal, std ``init_std``, drawn in ``parameter_shapes``
        order from ``random.Random(seed)``), or the given ``weights`` by name."""
        self.config = config
        rng = random.Random(seed)
        self.params: dict[str, Matrix] = {}
        for name, (rows, cols) in parameter_shapes(config).items():
            if weights is None:
                matrix = [
                    [rng.gauss(0.0, config.init_std) for _ in range(cols)] for _ in range(rows)
                ]
            else:
                matrix = weights[name]
                if len(matrix) != rows or any(len(row) != cols for row in matrix):
                    raise ValueError(f"weight {name} must be {rows} x {cols}")
            self.params[name] = [[Value(x) for x in row] for row in matrix]

    def parameters(self) -> list[Value]:
        """Every weight, matrix by matrix, row by row."""
        return [v for matrix in self.params.values() for row in matrix for v in row]

    def weights(self) -> dict[str, list[list[float]]]:
        """The weights as plain floats, by name (what a checkpoint stores)."""
        return {name: [[v.data for v in row] for row in m] for name, m in self.params.items()}

    def forward(
        self, token: int, pos: int, keys: list[list[Vector]], values: list[list[Vector]]
    ) -> Vector:
        """The logits for the token after ``token``, which sits at position ``pos``.

        ``keys[layer]`` and ``values[layer]`` hold the earlier tokens' keys and
        values; this token's are appended (the KV cache, as plain lists).
        """
        c, p = self.config, self.params
        x = [
            t + q for t, q in zip(p["tok_emb.weight"][token], p["pos_emb.weight"][pos], strict=True)
        ]
        x = rmsnorm(x, c.norm_eps)
        for i in range(c.n_layer):
            x = self._attention(i, x, keys[i], values[i])
            x = self._mlp(i, x)
        return linear(x, p["lm_head.weight"])

    def _attention(self, i: int, x: Vector, keys: list[Vector], values: list[Vector]) -> Vector:
        c, p, prefix = self.config, self.params, f"blocks.{i}.attn."
        h = rmsnorm(x, c.norm_eps)
        q = linear(h, p[prefix + "w_q.weight"])
        keys.append(linear(h, p[prefix + "w_k.weight"]))
        values.append(linear(h, p[prefix + "w_v.weight"]))
        d = c.head_dim
        scale = 1.0 / math.sqrt(d)
        heads: Vector = []
        for head in range(c.n_head):
            s = slice(head * d, (head + 1) * d)
            q_h = q[s]
            scores = [Value.dot(q_h, k[s]) * scale for k in keys]
            weights = softmax(scores)
            heads += [Value.dot(weights, [v[j] for v in values]) for j in range(s.start, s.stop)]
        out = linear(heads, p[prefix + "w_o.weight"])
        return [a + b for a, b in zip(x, out, strict=True)]  # residual

    def _mlp(self, i: int, x: Vector) -> Vector:
        c, p, prefix = self.config, self.params, f"blocks.{i}.ffn."
        h = linear(rmsnorm(x, c.norm_eps), p[prefix + "w1.weight"])
        h = linear([v.relu() for v in h], p[prefix + "w2.weight"])
        return [a + b for a, b in zip(x, h, strict=True)]  # residual

    def logits(self, tokens: list[int]) -> list[Vector]:
        """The logits at every position of ``tokens`` (one forward call per token)."""
        if len(tokens) > self.config.block_size:
            raise ValueError(f"{len(tokens)} tokens exceed block_size {self.config.block_size}")
        keys: list[list[Vector]] = [[] for _ in range(self.config.n_layer)]
        values: list[list[Vector]] = [[] for _ in range(self.config.n_layer)]
        return [self.forward(t, pos, keys, values) for pos, t in enumerate(tokens)]

    def token_losses(self, tokens: list[int]) -> list[Value]:
        """Cross-entropy of each of ``tokens[1:]``, predicted from the tokens before it."""
        return [
            -softmax(logits)[target].log()  # -log p(target)
            for logits, target in zip(self.logits(tokens[:-1]), tokens[1:], strict=True)
        ]

    def loss(self, tokens: list[int]) -> Value:
        """Mean cross-entropy of predicting ``tokens[1:]`` from the tokens before each."""
        losses = self.token_losses(tokens)
        return Value.sum(losses) * (1.0 / len(losses))
