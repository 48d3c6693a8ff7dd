"""Where the weights sit in memory while tokens are decoded one at a time.

With a KV cache every step of batch-1 generation feeds a single token, so every
linear layer is a matrix-vector product, and its time is the time to read the
weight from memory. How fast the CPU's BLAS reads a matrix depends on its layout:
an ``(out, in)`` weight with more outputs than inputs (the feed-forward's
expansion, SwiGLU's gate and value, the output head) is read 1.1-2.8x faster
stored column-major, and a narrowing one 1.1-1.6x slower; square ones are even
(``python bench/bench_generate.py --layouts`` times every shape both ways).

So for decoding, :class:`MatvecLayout`

* gives each widening weight a column-major copy of itself: same shape, same
  values, other strides;
* stacks each layer's query, key and value weights as the rows of one
  column-major matrix (they all read the same input), which the attention layer
  then multiplies once (``CausalSelfAttention.joined_qkv``): one wide product
  instead of three narrower ones, each read in the faster layout.

The copies are put in place for one step at a time (:meth:`MatvecLayout.applied`),
a pointer swap per weight (about 30 us a step for 40 weights). Between two tokens the
model is exactly as it was, so whatever else runs on it then (the inspector server
answers other requests between the tokens of a generation; a notebook may train)
computes what it would with no generation in flight, bit for bit. A write to a
weight between two steps reaches the copy before the next step; one during a step
reaches the weight after it.

Nothing is computed differently beyond float rounding (the sums run in another
order).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from tinylm.model.attention import CausalSelfAttention

if TYPE_CHECKING:
    from tinylm.model.gpt import GPT

#: Only weights of this dtype, on this device, are moved: where the effect was measured.
MEASURED_ON = (torch.float32, "cpu")

#: The fewest one-token steps ahead for which the layout is worth its copies. Each
#: generation copies the moved weights once; below about 16-24 steps that costs more
#: than the faster steps save. The 13.9M GPT-2 of ``bench/bench_generate.py --layouts``,
#: without the layout / with it: 0.58-0.66x at 4 new tokens, 0.98x at 16, 1.05-1.14x at
#: 32, 1.11-1.34x at 64 (two runs); with the copies made by rows, 0.54x, 0.86x, 1.18x,
#: 1.20x (one run). So 32 leaves a margin.
MIN_ONE_TOKEN_STEPS = 32


@dataclass
class _Copy:
    """One weight and its copy in the decode layout."""

    param: nn.Parameter
    copy: Tensor
    seen: int  # the parameter's version when the copy last matched it


class MatvecLayout:
    """Copies of a model's weights laid out for matrix-vector products.

    Making one copies the weights (nothing of the model changes); :meth:`applied`
    puts the copies in place for the duration of a ``with`` block. When that pays is
    the caller's call: ``generate`` takes a layout for its one-token steps
    (:func:`shared_layout`), when at least ``MIN_ONE_TOKEN_STEPS`` of them lie ahead.
    """

    def __init__(self, model: GPT) -> None:
        self.model = weakref.ref(model)
        self._copies: list[_Copy] = []
        self._joined: list[tuple[CausalSelfAttention, tuple[Tensor, Tensor | None]]] = []
        self._in_place = False
        with torch.inference_mode(False), torch.no_grad():  # ordinary, trainable tensors
            for attention in _movable_attention(model):
                joined, copies = _join_qkv(attention)
                self._joined.append((attention, joined))
                self._copies += copies
            for weight in _widening_weights(model):
                column_major = weight.data.new_empty(weight.shape[1], weight.shape[0]).t()
                self._copies.append(_copy(weight, column_major))

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model computes with the copies inside the block, and with its own weights after.

        Re-entering while in place changes nothing: the outer block gives the weights back.
        """
        if self._in_place:
            yield
            return
        originals = self._put_in_place()
        try:
            yield
        finally:
            self._give_back(originals)

    def _put_in_place(self) -> list[Tensor]:
        originals = []
        with torch.inference_mode(False), torch.no_grad():
            for entry in self._copies:
                original = entry.param.data
                if entry.param._version != entry.seen:  # written since the copy was made
                    copy_by_rows(entry.copy, original)
                entry.param.data = entry.copy
                entry.seen = entry.param._version
                originals.append(original)
        for attention, joined in self._joined:
            attention.joined_qkv = joined
        self._in_place = True
        return originals

    def _give_back(self, originals: list[Tensor]) -> None:
        for attention, _ in self._joined:
            attention.joined_qkv = None
        with torch.inference_mode(False), torch.no_grad():
            for entry, original in zip(self._copies, originals, strict=True):
                if entry.param._version != entry.seen:  # written during the step: keep it
                    copy_by_rows(original, entry.copy)
                entry.param.data = original
                entry.seen = entry.param._version
        self._in_place = False


#: Each model's layout, by ``id(model)``, while something holds it (weak values: the
#: entry goes when the last generation using the layout drops it).
_shared: weakref.WeakValueDictionary[int, MatvecLayout] = weakref.WeakValueDictionary()


def shared_layout(model: GPT) -> MatvecLayout:
    """The model's layout: made by the first generation that asks, shared while any holds it.

    Generations of one model that run in turns (the server interleaves requests
    token by token) then keep one set of copies rather than one each.
    """
    layout = _shared.get(id(model))
    if layout is None or layout.model() is not model:  # none, or an id reused
        layout = MatvecLayout(model)
        _shared[id(model)] = layout
    return layout


#: Rows per piece of a transposing copy (see :func:`copy_by_rows`).
ROWS_PER_COPY = 128


def copy_by_rows(into: Tensor, source: Tensor) -> None:
    """``into.copy_(source)`` between a row-major and a column-major matrix, in pieces.

    One copy of a whole matrix into the other layout walks one side with a stride
    of a full row or column, so nearly every element read or written is a cache
    miss; a piece of ``ROWS_PER_COPY`` rows at a time keeps both sides' lines in
    cache. On this machine, one thread: GPT-2 small's 50257 x 768 head 507 ms in one
    copy, 93 ms in pieces; the 13.9M model's 8192 x 384 head 16.3 ms and 9.0 ms.
    """
    for start in range(0, len(source), ROWS_PER_COPY):
        into[start : start + ROWS_PER_COPY].copy_(source[start : start + ROWS_PER_COPY])


def _measured_here(param: Tensor) -> bool:
    return (param.dtype, param.device.type) == MEASURED_ON


def _movable_attention(model: GPT) -> list[CausalSelfAttention]:
    """Attention layers whose Q/K/V weights can be joined (not those in a layout now)."""
    return [
        module
        for module in model.modules()
        if isinstance(module, CausalSelfAttention)
        and module.joined_qkv is None
        and all(_measured_here(p) for p in module.parameters())
    ]


def _join_qkv(
    attention: CausalSelfAttention,
) -> tuple[tuple[Tensor, Tensor | None], list[_Copy]]:
    """W_q, W_k, W_v (and their biases) copied as row blocks of one column-major matrix."""
    projections = (attention.w_q, attention.w_k, attention.w_v)
    rows = sum(p.out_features for p in projections)
    first = attention.w_q.weight
    # (rows, in) stored column-major; each block is filled by one transposing copy
    weight = first.new_empty(first.shape[1], rows).t()
    copies = _share_rows(weight, [p.weight for p in projections])
    bias = None
    if attention.w_q.bias is not None:
        bias = attention.w_q.bias.new_empty(rows)
        copies += _share_rows(bias, [p.bias for p in projections])
    return (weight, bias), copies


def _share_rows(joined: Tensor, params: list[nn.Parameter]) -> list[_Copy]:
    """Copy each parameter into its block of rows of ``joined``, in order."""
    copies = []
    start = 0
    for param in params:
        block = joined[start : start + len(param)]
        copies.append(_copy(param, block))
        start += len(block)
    return copies


def _copy(param: nn.Parameter, into: Tensor) -> _Copy:
    copy_by_rows(into, param.data)
    return _Copy(param, into, param._version)


def _widening_weights(model: GPT) -> list[nn.Parameter]:
    """Row-major weights of linear layers with more outputs than inputs, each once."""
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features > module.in_features:
            weight = module.weight
            if _measured_here(weight) and weight.is_contiguous():
                found[id(weight)] = weight  # a tied head is the embedding: move it once
    return list(found.values())
