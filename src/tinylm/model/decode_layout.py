"""Where the weights sit in memory while tokens are decoded one at a time.

With a KV cache every step of batch-1 generation feeds a single token, so every
linear layer is a matrix-vector product, and its time is the time to read the
weight from memory. How fast the CPU's BLAS reads a matrix depends on its layout:
an ``(out, in)`` weight with more outputs than inputs (the feed-forward's
expansion, SwiGLU's gate and value, the output head) is read 1.1-2.8x faster
stored column-major, and a narrowing one 1.1-1.6x slower; square ones are even
(``python bench/bench_generate.py --layouts`` times every shape both ways).

So while decoding, :func:`matvec_layout`

* gives each widening weight a column-major copy of itself: same shape, same
  values, other strides;
* stacks each layer's query, key and value weights as the rows of one
  column-major matrix (they all read the same input), which the attention layer
  then multiplies once (``CausalSelfAttention.joined_qkv``): one wide product
  instead of three narrower ones, each read in the faster layout.

Nothing is computed differently beyond float rounding (the sums run in another
order). Training never sees the new layout: on exit every weight gets its own
tensor back, so a run that samples mid-training stays bit-for-bit reproducible,
and a write to a weight in between (a training step between two tokens) is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from tinylm.model.attention import CausalSelfAttention

if TYPE_CHECKING:
    from tinylm.model.gpt import GPT

#: Only weights of this dtype, on this device, are moved: where the effect was measured.
MEASURED_ON = (torch.float32, "cpu")

#: The fewest one-token steps ahead for which the layout is worth its copies. Each
#: generation copies the moved weights once; below about 16 steps that costs more than
#: the faster steps save. The 13.9M GPT-2 of ``bench/bench_generate.py --layouts``, two
#: runs (at 64 also the A/B runs of docs/model.md): 0.58-0.66x at 4 new tokens, 0.98x at
#: 16, 1.05-1.14x at 32, 1.11-1.34x at 64. So 32 leaves a margin.
MIN_ONE_TOKEN_STEPS = 32

#: A parameter that was given new storage, its original tensor, and its version then.
Moved = tuple[nn.Parameter, Tensor, int]


@contextlib.contextmanager
def matvec_layout(model: GPT) -> Iterator[None]:
    """Lay the model's weights out for matrix-vector products, for the duration.

    When that pays is the caller's call: ``generate`` takes it for its one-token
    steps, when at least ``MIN_ONE_TOKEN_STEPS`` of them lie ahead.
    """
    moved: list[Moved] = []
    joined: list[CausalSelfAttention] = []
    try:
        with torch.inference_mode(False), torch.no_grad():  # ordinary, trainable tensors
            for attention in _movable_attention(model):
                moved += _join_qkv(attention)
                joined.append(attention)
            moved += _to_column_major(_widening_weights(model))
        yield
    finally:
        with torch.inference_mode(False), torch.no_grad():
            for attention in joined:
                attention.joined_qkv = None
            for param, original, version in moved:
                if param._version != version:  # a write landed on the new storage: keep it
                    original.copy_(param.data)
                param.data = original


def _measured_here(param: Tensor) -> bool:
    return (param.dtype, param.device.type) == MEASURED_ON


def _movable_attention(model: GPT) -> list[CausalSelfAttention]:
    """Attention layers whose Q/K/V weights can be joined.

    Not those already joined: they belong to a generation still running (the
    server interleaves requests token by token), which gives them back.
    """
    return [
        module
        for module in model.modules()
        if isinstance(module, CausalSelfAttention)
        and module.joined_qkv is None
        and all(_measured_here(p) for p in module.parameters())
    ]


def _join_qkv(attention: CausalSelfAttention) -> list[Moved]:
    """Make W_q, W_k, W_v (and their biases) row blocks of one column-major matrix."""
    projections = (attention.w_q, attention.w_k, attention.w_v)
    rows = sum(p.out_features for p in projections)
    first = attention.w_q.weight
    # (rows, in) stored column-major; each block is filled by one transposing copy
    weight = first.new_empty(first.shape[1], rows).t()
    moved = _share_rows(weight, [p.weight for p in projections])
    bias = None
    if attention.w_q.bias is not None:
        bias = attention.w_q.bias.new_empty(rows)
        moved += _share_rows(bias, [p.bias for p in projections])
    attention.joined_qkv = (weight, bias)
    return moved


def _share_rows(joined: Tensor, params: list[nn.Parameter]) -> list[Moved]:
    """Copy each parameter into its block of rows of ``joined`` (in order), and point it there."""
    moved = []
    start = 0
    for param in params:
        block = joined[start : start + len(param)]
        block.copy_(param.data)
        moved.append(_move(param, block))
        start += len(block)
    return moved


def _move(param: nn.Parameter, storage: Tensor) -> Moved:
    """Give ``param`` the tensor ``storage`` (same values), noting what ``matvec_layout``
    needs to give the original back: the tensor itself and the version it starts from."""
    original = param.data
    param.data = storage
    return param, original, param._version


def _widening_weights(model: GPT) -> list[nn.Parameter]:
    """Row-major weights of linear layers with more outputs than inputs, each once."""
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features > module.in_features:
            weight = module.weight
            if _measured_here(weight) and weight.is_contiguous():
                found[id(weight)] = weight  # a tied head is the embedding: move it once
    return list(found.values())


def _to_column_major(weights: list[nn.Parameter]) -> list[Moved]:
    return [_move(weight, weight.data.t().contiguous().t()) for weight in weights]
