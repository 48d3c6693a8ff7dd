"""Everything that decides the model's shape, in one validated dataclass.

A ``ModelConfig`` is checked once, in ``__post_init__``, so a bad combination
(``n_embd`` not divisible by ``n_head``, an unknown activation, ...) fails at the
moment it is written down with a message that says what to change, instead of as
a shape error deep inside a forward pass. The dataclass is frozen: to change a
field use ``dataclasses.replace(config, n_layer=8)``, which validates again.

Named presets are plain data (``PRESETS``), not subclasses: a preset is just a
dict of field values, and ``ModelConfig.from_preset(name, **overrides)`` merges
the overrides on top.

Dicts written by older versions are still read: :func:`current_spelling` maps
their retired fields (``attention``, now part of ``kernels``) to today's and
says so in a note, which ``from_dict`` hands out as a warning (the model never
prints; the CLI shows warnings as one line).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tinylm.check_values import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_vocab_size,
)
from tinylm.errors import TinylmError

POSITIONS = ("learned", "sinusoidal", "rope", "none")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu")
NORMS = ("rmsnorm", "layernorm")
NORM_PLACEMENTS = ("pre", "post")
#: ``kernels``: ``explicit`` computes every layer by its written-out formula (attention's
#: softmax(QK^T/sqrt(d))V, the norms, activations, RoPE rotations, and AdamW when training);
#: ``fused`` hands the same formulas to torch's fused kernels (``F.scaled_dot_product_attention``,
#: ``F.layer_norm``, ...), which are faster and agree to float rounding.
KERNEL_IMPLS = ("explicit", "fused")


@dataclass(frozen=True)
class ModelConfig:
    """The hyperparameters of a GPT-style decoder.

    The defaults are the ``small`` preset with a byte-level vocabulary (256); set
    ``vocab_size`` from your tokenizer.

    Derived sizes (read these, not the raw fields, when building modules):

    * ``head_dim = n_embd // n_head``.
    * ``kv_heads``: ``n_kv_head`` or, when it is ``None``, ``n_head``. Equal to
      ``n_head`` is multi-head attention (MHA), a divisor of it is grouped-query
      attention (GQA), 1 is multi-query attention (MQA).
    * ``ffn_hidden``: ``d_ff`` when given. Otherwise ``4 * n_embd`` for relu, gelu,
      gelu_tanh and silu. For swiglu, which has three weight matrices instead of two, the
      width is scaled by 2/3 to keep the parameter count of a 4x MLP, then rounded
      up to a multiple of ``multiple_of`` (LLaMA's rule):
      ``multiple_of * ceil(int(2 * 4 * n_embd / 3) / multiple_of)``.
      For example n_embd 288, multiple_of 32 gives 768.
    """

    vocab_size: int = 256
    block_size: int = 128  # context length: the most tokens the model sees at once
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_kv_head: int | None = None  # None -> n_head (MHA)
    d_ff: int | None = None  # None -> derived, see ``ffn_hidden``
    multiple_of: int = 64  # swiglu hidden width is rounded up to a multiple of this
    position: str = "learned"  # learned | sinusoidal | rope | none
    rope_theta: float = 10000.0
    activation: str = "gelu"  # relu | gelu | gelu_tanh | silu | swiglu
    norm: str = "layernorm"  # rmsnorm | layernorm
    norm_placement: str = "pre"  # pre | post
    norm_gain: bool = True  # False: norms only normalise, no learnable gain (microgpt)
    norm_eps: float = 1e-5
    embedding_norm: bool = False  # normalise the summed embeddings once (microgpt)
    final_norm: bool = True  # normalise before the output projection
    tie_embeddings: bool = True  # output projection reuses the token embedding matrix
    bias: bool = True  # biases in linear layers and LayerNorm
    dropout: float = 0.0
    init_std: float = 0.02
    scaled_residual_init: bool = True  # GPT-2: residual output projections std/sqrt(2L)
    kernels: str = "fused"  # explicit (the written-out formulas) | fused (torch's kernels)

    def __post_init__(self) -> None:
        _validate(self)

    # -- derived sizes ---------------------------------------------------------

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def ffn_hidden(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if self.activation != "swiglu":
            return 4 * self.n_embd
        hidden = int(2 * 4 * self.n_embd / 3)
        return self.multiple_of * math.ceil(hidden / self.multiple_of)

    # -- (de)serialisation -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field, including the ``None`` defaults, so the dict round-trips."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict; an unknown key is an error, not silently dropped.

        A retired field (see :data:`RETIRED_FIELDS`) is read in today's spelling,
        with a ``UserWarning`` that says how it was read.
        """
        if not isinstance(data, dict):
            raise TinylmError(f"model config must be a dict, got {type(data).__name__}")
        data, note = current_spelling(data)
        if note is not None:
            # stacklevel 1: one location, so a run that reads its config twice notes it once
            warnings.warn(note, stacklevel=1)
        valid = field_names()
        for key in data:
            if key not in valid:
                raise TinylmError(
                    f"unknown model config key {key!r}; valid keys are: {', '.join(valid)}"
                )
        return cls(**data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TinylmError(f"model config is not valid JSON: {exc}; fix the file") from None
        return cls.from_dict(data)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named preset from ``PRESETS`` with ``overrides`` applied on top."""
        if name not in PRESETS:
            raise TinylmError(
                f"unknown model preset {name!r}; valid presets are: {', '.join(PRESETS)}"
            )
        return cls.from_dict({**PRESETS[name], **overrides})


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(ModelConfig)]


#: Fields older versions wrote that are read still: old name -> the field it became.
#: ``attention`` (explicit|fused) chose the attention product alone, ``kernels`` the
#: other layers; they are one switch now, ``kernels``.
RETIRED_FIELDS = {"attention": "kernels"}


def current_spelling(settings: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``settings`` with retired fields mapped to today's, and a one-line note (or ``None``).

    ``attention`` merges into ``kernels``: alone it becomes ``kernels``; beside
    ``kernels`` the result is ``explicit`` when either said ``explicit``. An old
    run with one of the two written out thus keeps that part exactly as it was
    computed, and the other part moves from torch's fused kernel to the
    written-out formula of the same function (equal to float rounding), rather
    than the part the user asked to see written out going back to a fused kernel.
    """
    current = dict(settings)
    if "attention" not in current:
        return current, None
    attention = current.pop("attention")
    check_choice("attention", attention, KERNEL_IMPLS)
    kernels = current.get("kernels")
    if kernels is None or kernels not in KERNEL_IMPLS:  # an invalid kernels fails on its own
        merged = attention if kernels is None else kernels
        said = f"attention={attention}"
    else:
        merged = "explicit" if "explicit" in (attention, kernels) else "fused"
        said = f"attention={attention} with kernels={kernels}"
    current["kernels"] = merged
    note = (
        f"model setting {said} is read as kernels={merged}: attention and the other "
        "layers share one switch now, kernels (explicit: the written-out formulas, "
        "fused: torch's kernels)"
    )
    return current, note


# -- validation ----------------------------------------------------------------


#: Upper bounds on the sizes, each far above any real model, so that a damaged or
#: hostile config.json is refused before anything is built from it. Loading builds
#: the model on torch's meta device first (shapes, no memory) and compares it with
#: the weights, but its Python modules are real (``n_layer`` of them), and the RoPE
#: and sinusoidal tables and the KV cache are sized by ``block_size``, which no
#: weight tensor bounds.
MAX_LAYERS = 1 << 12  # 4,096 blocks: 32x the deepest (Llama 3.1 405B has 126)
MAX_WIDTH = 1 << 18  # 262,144 for n_embd, d_ff, multiple_of: ~5x the widest FFN (53,248)
MAX_BLOCK_SIZE = 1 << 20  # 1,048,576 tokens of context


def _validate(c: ModelConfig) -> None:
    check_vocab_size("vocab_size", c.vocab_size)
    check_int("block_size", c.block_size, 1, high=MAX_BLOCK_SIZE)
    check_int("n_layer", c.n_layer, 1, high=MAX_LAYERS)
    for name in ("n_embd", "n_head", "multiple_of"):
        check_int(name, getattr(c, name), 1, high=MAX_WIDTH)
    check_int("n_kv_head", c.n_kv_head, 1, allow_none=True, high=MAX_WIDTH)
    check_int("d_ff", c.d_ff, 1, allow_none=True, high=MAX_WIDTH)

    check_choice("position", c.position, POSITIONS)
    check_choice("activation", c.activation, ACTIVATIONS)
    check_choice("norm", c.norm, NORMS)
    check_choice("norm_placement", c.norm_placement, NORM_PLACEMENTS)
    check_choice("kernels", c.kernels, KERNEL_IMPLS)
    for name in (
        "norm_gain",
        "embedding_norm",
        "final_norm",
        "tie_embeddings",
        "bias",
        "scaled_residual_init",
    ):
        check_bool(name, getattr(c, name))

    if c.n_embd % c.n_head != 0:
        raise TinylmError(
            f"n_embd {c.n_embd} is not divisible by n_head {c.n_head}; "
            "choose n_embd as a multiple of n_head"
        )
    if c.n_head % c.kv_heads != 0:
        raise TinylmError(
            f"n_kv_head {c.kv_heads} does not divide n_head {c.n_head}; "
            "use n_head (MHA), a divisor of it (GQA) or 1 (MQA)"
        )
    if c.position == "rope" and c.head_dim % 2 != 0:
        raise TinylmError(
            f"rope needs an even head dimension, but n_embd {c.n_embd} / n_head {c.n_head} "
            f"= {c.head_dim}; change n_embd or n_head"
        )
    for name in ("rope_theta", "norm_eps", "init_std"):
        check_number(name, getattr(c, name), 0.0, strict=True)
    check_fraction("dropout", c.dropout)


# -- presets -------------------------------------------------------------------
#
# Each preset lists every field that differs from a plain reading of the paper it
# names, so the table reads as documentation. ``vocab_size`` is a placeholder for
# all but gpt2: set it from your tokenizer (``from_preset("small", vocab_size=...)``).

PRESETS: dict[str, dict[str, Any]] = {
    # Karpathy's microgpt: one layer, character vocabulary (26 letters + BOS).
    # Its RMSNorm has no gain, it normalises the embeddings once before the block
    # and applies no final norm; 4,192 parameters with vocab 27.
    "microgpt": {
        "vocab_size": 27,
        "block_size": 16,
        "n_layer": 1,
        "n_embd": 16,
        "n_head": 4,
        "position": "learned",
        "activation": "relu",
        "norm": "rmsnorm",
        "norm_gain": False,
        "embedding_norm": True,
        "final_norm": False,
        "tie_embeddings": False,
        "bias": False,
        "scaled_residual_init": False,
    },
    # GPT-2 small, 124M parameters (tied). Dropout is 0 here; GPT-2 trained with 0.1.
    "gpt2": {
        "vocab_size": 50257,
        "block_size": 1024,
        "n_layer": 12,
        "n_embd": 768,
        "n_head": 12,
        "position": "learned",
        "activation": "gelu",
        "norm": "layernorm",
        "norm_placement": "pre",
        "tie_embeddings": True,
        "bias": True,
    },
    # A LLaMA-style model at the size of llama2.c's "stories15M" (dim 288, 6 layers,
    # 6 heads, hidden 768, context 256, the 32,000-token LLaMA vocabulary), with
    # grouped-query attention (2 KV heads, 3 query heads each). Untied, so 23.7M
    # parameters (llama2.c ties them: 15M), 5.3M of them in the transformer blocks.
    "llama": {
        "vocab_size": 32000,
        "block_size": 256,
        "n_layer": 6,
        "n_embd": 288,
        "n_head": 6,
        "n_kv_head": 2,
        "multiple_of": 32,
        "position": "rope",
        "rope_theta": 10000.0,
        "activation": "swiglu",
        "norm": "rmsnorm",
        "tie_embeddings": False,
        "bias": False,
    },
    # The CPU default: GPT-2 shape, scaled down to train in minutes on two cores.
    "small": {
        "vocab_size": 256,
        "block_size": 128,
        "n_layer": 4,
        "n_embd": 128,
        "n_head": 4,
        "position": "learned",
        "activation": "gelu",
        "norm": "layernorm",
        "tie_embeddings": True,
        "bias": True,
        "dropout": 0.0,
    },
}
