"""How the decode engine stores a weight matrix: float32, bfloat16 or int8.

Generating one token at a time reads every weight once per token, so the bytes a
weight takes are, roughly, the time it takes. Each format here is a small class
that holds one linear layer's weight ``(out, in)`` (and its bias, kept in float32)
and multiplies an activation ``x`` ``(..., in)`` by it: ``x W^T + b``.

* ``float32``: the weight as trained, 4 bytes a number. A matrix with more outputs
  than inputs is stored column-major (the same matrix, other strides): the CPU's
  BLAS reads such a matrix faster that way in a matrix-vector product.
* ``bfloat16``: 2 bytes a number, float32's exponent with 8 bits of mantissa. The
  product widens each weight back to float32 exactly (a bfloat16 is a float32's top
  16 bits) and multiplies it by the float32 activation. Where tinylm's C kernel
  cannot run, torch's bfloat16 product is used, which rounds the activation to
  bfloat16 as well.
* ``int8`` (weight-only, symmetric, per output channel): 1 byte a number and one
  float32 scale per row. For a row ``w`` of ``W``::

      scale = max(|w|) / 127                     # the row's largest magnitude maps to 127
      q     = clamp(round(w / scale), -127, 127)  # whole numbers in [-127, 127]
      w    ~= q * scale                           # dequantised, error at most scale / 2

  -128 is never used, so the grid is symmetric around 0. The activations stay
  float32. Dequantisation happens inside the product: because each output channel
  has one scale, ``x (q * scale)^T = (x q^T) * scale``, so the product runs on
  ``q`` and each output is multiplied by its row's scale afterwards
  (:meth:`Int8Linear.__call__`).

The int8 and bfloat16 products run in tinylm's C kernel (:mod:`native_kernels`),
which converts eight weights at a time in registers and never writes a float32
copy of the matrix; without it they fall back to torch, which must widen the whole
matrix on every call and is slower than float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tinylm.inference import native_kernels

#: The weight formats the engine can hold, by name.
WEIGHT_FORMATS = ("float32", "bfloat16", "int8")

#: The largest int8 magnitude used: symmetric, so -128 is left out.
INT8_LEVELS = 127


class Float32Linear:
    """``x W^T + b`` with the weight as trained."""

    def __init__(self, weight: Tensor, bias: Tensor | None, column_major: bool = True) -> None:
        """``column_major=False`` keeps rows contiguous (a table whose rows are looked up)."""
        weight = weight.detach().to(torch.float32, copy=True)  # never the model's own tensor
        if column_major and weight.shape[0] > weight.shape[1]:  # widening: read faster so
            self.weight = weight.t().contiguous().t()  # (a second copy, while building)
        else:
            self.weight = weight.contiguous()
        self.bias = None if bias is None else bias.detach().float().clone()

    def __call__(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    @property
    def nbytes(self) -> int:
        return _nbytes(self.weight, self.bias)


class BFloat16Linear:
    """``x W^T + b`` with ``W`` rounded to bfloat16; the result is float32."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        self.weight = weight.detach().to(torch.bfloat16, copy=True).contiguous()
        self.bias = None if bias is None else bias.detach().float().clone()

    def __call__(self, x: Tensor) -> Tensor:
        out = native_kernels.bfloat16_matmul(x, self.weight)  # x stays float32
        if out is None:  # no kernel here: torch's bfloat16 product rounds x as well
            out = F.linear(x.to(torch.bfloat16), self.weight).float()
        return out if self.bias is None else out + self.bias

    @property
    def nbytes(self) -> int:
        return _nbytes(self.weight, self.bias)


def quantize_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(q, scale)``: ``weight`` ``(out, in)`` as int8 rows and one float32 scale per row.

    A row of zeros gets scale 1 (any scale gives q = 0; 1 avoids dividing by 0).
    """
    w = weight.detach().float()
    largest = w.abs().amax(dim=1)
    scale = torch.where(largest > 0, largest / INT8_LEVELS, torch.ones_like(largest))
    q = torch.clamp(torch.round(w / scale[:, None]), -INT8_LEVELS, INT8_LEVELS)
    return q.to(torch.int8).contiguous(), scale.contiguous()


def dequantize_int8(q: Tensor, scale: Tensor) -> Tensor:
    """The float32 matrix ``q * scale`` (row by row) that an int8 weight stands for."""
    return q.float() * scale[:, None]


def int8_matmul_reference(x: Tensor, q: Tensor, scale: Tensor) -> Tensor:
    """``x (q * scale)^T`` written out: the product on ``q``, then each output times its scale."""
    return F.linear(x, q.to(x.dtype)) * scale


class Int8Linear:
    """``x W^T + b`` with ``W`` held as int8 rows and a float32 scale per row."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        self.q, self.scale = quantize_int8(weight)
        self.bias = None if bias is None else bias.detach().float().clone()

    @classmethod
    def from_quantized(cls, q: Tensor, scale: Tensor, bias: Tensor | None) -> Int8Linear:
        """An int8 weight already quantised (a run ``tinylm quantize`` wrote), used as stored.

        Quantising ``q * scale`` again would not always give ``scale`` back to the
        last bit (``(127 s) / 127`` rounds twice), so a stored weight is never requantised.
        """
        linear = cls.__new__(cls)
        linear.q = q.to(torch.int8).contiguous()
        linear.scale = scale.to(torch.float32).contiguous()
        linear.bias = None if bias is None else bias.detach().float().clone()
        return linear

    def __call__(self, x: Tensor) -> Tensor:
        out = native_kernels.int8_matmul(x, self.q, self.scale)  # reads the int8 bytes
        if out is None:  # no kernel here: widen q to x's type for torch's product
            out = int8_matmul_reference(x, self.q, self.scale)
        return out if self.bias is None else out + self.bias

    def rows(self, ids: Tensor) -> Tensor:
        """Rows ``ids`` dequantised (the token embedding, when it is this matrix)."""
        return self.q[ids].float() * self.scale[ids][..., None]

    @property
    def nbytes(self) -> int:
        return _nbytes(self.q, self.scale, self.bias)


PackedLinear = Float32Linear | BFloat16Linear | Int8Linear

_CLASSES = {"float32": Float32Linear, "bfloat16": BFloat16Linear, "int8": Int8Linear}


def pack_linear(weight: Tensor, bias: Tensor | None, weights: str) -> PackedLinear:
    """One linear layer's weight (and bias) in format ``weights``."""
    return _CLASSES[weights](weight, bias)


def _nbytes(*tensors: Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)
