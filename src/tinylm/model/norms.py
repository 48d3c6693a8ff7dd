"""Normalisation layers, written out instead of calling ``nn.LayerNorm``.

A deep residual network adds a little to the residual stream in every layer, so
the scale of the activations drifts. Normalising the input of each sub-layer keeps
every layer working on vectors of a predictable size, which is what lets deep
transformers train at ordinary learning rates.

Both layers compute in at least float32 even when the model runs in bfloat16 or
float16: a mean of squares over hundreds of features loses too much precision in
16 bits.

Each layer has two paths, chosen by ``ModelConfig.kernels``: ``explicit``, the
formula written out below (several element-wise operations, each with its own
backward), and ``fused``, torch's one-kernel ``F.layer_norm`` / ``F.rms_norm``,
which computes the same thing (the tests hold them together) in one pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinylm.model.config import ModelConfig


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang & Sennrich, 2019).

    ``y = x / sqrt(mean(x^2) + eps) * g``. Unlike LayerNorm it does not subtract
    the mean: the paper found re-scaling alone gives the benefit, for less work.
    With ``gain=False`` there is no learnable ``g`` (microgpt's variant).
    """

    def __init__(self, dim: int, eps: float = 1e-5, gain: bool = True, fused: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.fused = fused
        self.weight = nn.Parameter(torch.ones(dim)) if gain else None

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:  # the gain applied outside: see _affine
            return _affine(F.rms_norm(x, x.shape[-1:], None, self.eps), self.weight, None)
        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(compute_dtype)
        rms_inv = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        y = (xf * rms_inv).to(x.dtype)
        if self.weight is not None:
            y = y * self.weight
        return y


class LayerNorm(nn.Module):
    """Layer normalisation (Ba et al., 2016) over the last dimension.

    ``y = (x - mean) / sqrt(var + eps) * g + b`` with the biased variance (divide
    by n, like ``torch.nn.LayerNorm``). ``gain`` and ``bias`` switch the learnable
    ``g`` and ``b`` on and off independently.
    """

    def __init__(
        self, dim: int, eps: float = 1e-5, gain: bool = True, bias: bool = True, fused: bool = False
    ) -> None:
        super().__init__()
        self.eps = eps
        self.fused = fused
        self.weight = nn.Parameter(torch.ones(dim)) if gain else None
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:  # the gain and bias applied outside: see _affine
            return _affine(
                F.layer_norm(x, x.shape[-1:], None, None, self.eps), self.weight, self.bias
            )
        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(compute_dtype)
        mean = xf.mean(dim=-1, keepdim=True)
        var = (xf - mean).pow(2).mean(dim=-1, keepdim=True)
        y = ((xf - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


def _affine(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """``y * weight + bias`` as separate operations, for reproducible runs.

    torch's CPU kernels compute the gradient of a fused norm's own gain by summing
    per-thread partial sums, so its last bits depend on the number of threads; the
    broadcast product's gradient is a reduction whose order does not. Applying the
    gain outside keeps a run bit-identical whatever ``threads`` chooses (the tests
    check this), for one cheap element-wise operation.
    """
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def build_norm(config: ModelConfig) -> nn.Module:
    """The norm layer the config asks for, at the model width."""
    fused = config.kernels == "fused"
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, eps=config.norm_eps, gain=config.norm_gain, fused=fused)
    return LayerNorm(
        config.n_embd, eps=config.norm_eps, gain=config.norm_gain, bias=config.bias, fused=fused
    )
