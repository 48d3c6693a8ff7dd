"""The position-wise feed-forward network: expand, activate, contract.

Attention mixes information *between* positions; the feed-forward network then
transforms each position on its own. It widens the vector (usually 4x), applies a
non-linearity, and projects back to the model width. Without the non-linearity
the two projections would collapse into one linear map.

The activations are written out so each formula is visible; the tests check them
against torch's own. With ``ModelConfig.kernels = "fused"`` (the default) the
layers call torch's one-kernel versions instead (``FUSED_ACTIVATIONS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinylm.model.config import ModelConfig


def relu(x: Tensor) -> Tensor:
    """max(0, x): the original transformer's activation."""
    return x.clamp_min(0)


def gelu(x: Tensor) -> Tensor:
    """x * Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel): a smooth ReLU.

    This is the exact erf form. GPT-2 used a tanh approximation of it
    (``gelu_tanh``); the two differ by less than 1e-3.
    """
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU with Phi approximated by ``0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``.

    The form GPT-2 was trained with (Hugging Face calls it ``gelu_new``). A model
    imported from GPT-2 needs exactly this one: the erf form would move its logits
    by far more than float32 rounding.
    """
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))
    return 0.5 * x * (1.0 + torch.tanh(inner))


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x), also called swish (Ramachandran et al.)."""
    return x * torch.sigmoid(x)


ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": relu,
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "silu": silu,
}

FUSED_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,  # the exact erf form, like ``gelu`` above
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "silu": F.silu,
}


def activation(name: str, kernels: str) -> Callable[[Tensor], Tensor]:
    """The activation ``name``: written out (``explicit``) or torch's kernel (``fused``)."""
    table = FUSED_ACTIVATIONS if kernels == "fused" else ACTIVATION_FUNCTIONS
    return table[name]


class FeedForward(nn.Module):
    """``W2 act(x W1 + b1) + b2`` with a fixed activation (relu, gelu, gelu_tanh or silu)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.act = activation(config.activation, config.kernels)
        self.w1 = nn.Linear(config.n_embd, config.ffn_hidden, bias=config.bias)  # expand
        self.w2 = nn.Linear(config.ffn_hidden, config.n_embd, bias=config.bias)  # contract
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.w2(self.act(self.w1(x))))


class SwiGLU(nn.Module):
    """The gated feed-forward of Shazeer (2020), used by LLaMA.

    ``FFN(x) = (swish(x W) * (x V)) W2``: one projection, passed through swish,
    acts as a learned gate on a second, linear projection. Three matrices instead
    of two, so ``ModelConfig.ffn_hidden`` scales the width by 2/3 to keep the
    parameter count of a plain 4x MLP.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = config.ffn_hidden
        self.w = nn.Linear(config.n_embd, hidden, bias=config.bias)  # gate, through swish
        self.v = nn.Linear(config.n_embd, hidden, bias=config.bias)  # value, linear
        self.w2 = nn.Linear(hidden, config.n_embd, bias=config.bias)  # contract
        self.swish = activation("silu", config.kernels)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.w2(self.swish(self.w(x)) * self.v(x)))


def build_feedforward(config: ModelConfig) -> nn.Module:
    if config.activation == "swiglu":
        return SwiGLU(config)
    return FeedForward(config)
