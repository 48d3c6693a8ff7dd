"""A model's shape in Hugging Face's words: tinylm ``ModelConfig`` <-> ``config.json``.

Two transformers architectures cover what tinylm can build with an exact
equivalent:

* ``GPT2LMHeadModel``: learned positions, LayerNorm with biases, a plain
  two-matrix MLP (relu, gelu, gelu_tanh = HF's ``gelu_new``, or silu), multi-head
  attention, tied or untied output projection.
* ``LlamaForCausalLM``: RoPE, RMSNorm, SwiGLU, MHA/GQA/MQA, biases on or off
  (``attention_bias`` and ``mlp_bias`` together), tied or untied.

Both are pre-norm with a final norm and learnable gains. Every other choice
(post-norm, sinusoidal or no positions, RMSNorm with learned positions, ...) has
no equivalent in either class, and :func:`hf_architecture` names the setting
that blocks it rather than exporting something that computes different numbers.

Reading a ``config.json`` is the mirror image, and every field that changes the
arithmetic is checked: a Llama with scaled RoPE or a GPT-2 that scales attention
by layer index is refused, not approximated.
"""

from __future__ import annotations

import math
from typing import Any

from tinylm.errors import TinylmError
from tinylm.model.config import ModelConfig

#: tinylm's architecture names -> the transformers class each exports as.
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}

#: tinylm activation -> GPT-2's ``activation_function`` (HF's ``gelu`` is the erf form).
_GPT2_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new", "silu": "silu"}
#: GPT-2 ``activation_function`` values tinylm computes exactly.
_GPT2_ACTIVATIONS_IN = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "silu": "silu",
    "swish": "silu",
}


def hf_architecture(config: ModelConfig) -> str:
    """``"gpt2"`` or ``"llama"``: the transformers family that computes what ``config`` does.

    Raises :class:`TinylmError` naming the first setting with no equivalent.
    """
    common = {
        "norm_placement": ("pre", "both families normalise before each sub-layer"),
        "embedding_norm": (False, "neither family normalises the embeddings"),
        "final_norm": (True, "both families end with a final norm"),
        "norm_gain": (True, "both families learn a norm gain"),
    }
    for name, (wanted, why) in common.items():
        _require(config, name, wanted, why)
    if config.position == "learned":
        _require(config, "norm", "layernorm", "GPT-2 (learned positions) uses LayerNorm")
        _require(config, "bias", True, "GPT-2 (learned positions) has biases everywhere")
        if config.activation not in _GPT2_ACTIVATIONS:
            _refuse("activation", config.activation, "GPT-2 has a plain MLP, not swiglu")
        if config.kv_heads != config.n_head:
            _refuse("n_kv_head", config.n_kv_head, "GPT-2 has multi-head attention only")
        return "gpt2"
    if config.position == "rope":
        _require(config, "norm", "rmsnorm", "Llama (rope) uses RMSNorm")
        _require(config, "activation", "swiglu", "Llama (rope) uses SwiGLU")
        return "llama"
    return _refuse(
        "position", config.position, "GPT-2 uses learned positions and Llama rope, nothing else"
    )


def _require(config: ModelConfig, name: str, wanted: Any, why: str) -> None:
    if getattr(config, name) != wanted:
        _refuse(name, getattr(config, name), why)


def _refuse(name: str, value: Any, why: str) -> str:
    raise TinylmError(
        f"{name}={value!r} has no Hugging Face equivalent ({why}); "
        "this model cannot be exported to transformers"
    )


# -- tinylm -> config.json --------------------------------------------------------------


def to_hf_config(
    config: ModelConfig, bos_id: int | None = None, eos_id: int | None = None
) -> dict[str, Any]:
    """The ``config.json`` of the transformers model equal to ``config``."""
    family = hf_architecture(config)
    common = {
        "architectures": [ARCHITECTURES[family]],
        "model_type": family,
        "vocab_size": config.vocab_size,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "initializer_range": config.init_std,
        "use_cache": True,
    }
    if family == "gpt2":
        return {
            **common,
            "n_positions": config.block_size,
            "n_ctx": config.block_size,
            "n_embd": config.n_embd,
            "n_layer": config.n_layer,
            "n_head": config.n_head,
            "n_inner": config.ffn_hidden,
            "activation_function": _GPT2_ACTIVATIONS[config.activation],
            "layer_norm_epsilon": config.norm_eps,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False,
        }
    return {
        **common,
        "max_position_embeddings": config.block_size,
        "hidden_size": config.n_embd,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "intermediate_size": config.ffn_hidden,
        "hidden_act": "silu",
        "rms_norm_eps": config.norm_eps,
        # Older transformers read rope_theta, newer ones rope_parameters: write both.
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "attention_bias": config.bias,
        "mlp_bias": config.bias,
        "attention_dropout": 0.0,
    }


# -- config.json -> tinylm --------------------------------------------------------------


def from_hf_config(data: Any, source: str = "config.json") -> tuple[str, ModelConfig]:
    """``(family, ModelConfig)`` for a GPT-2 or Llama ``config.json`` (a parsed dict).

    Every field that changes the computation is validated; ``source`` names the
    file in error messages.
    """
    if not isinstance(data, dict):
        raise TinylmError(f"{source} is not a JSON object; it is not a model config")
    reader = _Fields(data, source)
    family = data.get("model_type")
    if family == "gpt2":
        return family, _gpt2_config(reader)
    if family == "llama":
        return family, _llama_config(reader)
    raise TinylmError(
        f"{source} describes a {family!r} model; tinylm imports model_type 'gpt2' and 'llama'"
    )


class _Fields:
    """Typed, validated access to the fields of one config.json."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def int(self, key: str, default: Any = ..., *, optional: bool = False) -> int | None:
        value = self._get(key, default)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._bad(key, value, "a positive integer")
        return value

    def float(self, key: str, default: Any = ...) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(key, value, "a number")
        if not math.isfinite(value) or value <= 0:
            raise self._bad(key, value, "a positive number")
        return float(value)

    def bool(self, key: str, default: Any = ...) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, value, "true or false")
        return value

    def expect(self, key: str, wanted: Any, default: Any, why: str) -> None:
        value = self._get(key, default)
        if value != wanted:
            raise TinylmError(
                f"{self.source}: {key}={value!r} has no tinylm equivalent ({why}); "
                "this checkpoint cannot be imported"
            )

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is ...:
            raise TinylmError(f"{self.source} lacks {key!r}; it is not a complete model config")
        return default

    def _bad(self, key: str, value: Any, what: str) -> TinylmError:
        return TinylmError(f"{self.source}: {key} must be {what}, got {value!r}")


def _gpt2_config(f: _Fields) -> ModelConfig:
    f.expect("scale_attn_weights", True, True, "tinylm always scales scores by 1/sqrt(d)")
    f.expect("scale_attn_by_inverse_layer_idx", False, False, "tinylm never scales by layer")
    f.expect("add_cross_attention", False, False, "tinylm is decoder-only")
    activation = f.data.get("activation_function", "gelu_new")
    if activation not in _GPT2_ACTIVATIONS_IN:
        raise TinylmError(
            f"{f.source}: activation_function={activation!r} has no tinylm equivalent "
            f"(tinylm has {', '.join(_GPT2_ACTIVATIONS_IN)}); this checkpoint cannot be imported"
        )
    n_embd = f.int("n_embd")
    return _build(
        f,
        vocab_size=f.int("vocab_size"),
        block_size=f.int("n_positions", f.data.get("n_ctx", ...)),
        n_layer=f.int("n_layer"),
        n_embd=n_embd,
        n_head=f.int("n_head"),
        d_ff=f.int("n_inner", None, optional=True) or 4 * n_embd,
        position="learned",
        activation=_GPT2_ACTIVATIONS_IN[activation],
        norm="layernorm",
        norm_eps=f.float("layer_norm_epsilon", 1e-5),
        tie_embeddings=f.bool("tie_word_embeddings", True),
        bias=True,
    )


def _llama_config(f: _Fields) -> ModelConfig:
    f.expect("hidden_act", "silu", "silu", "tinylm's SwiGLU gates with silu")
    f.expect("rope_scaling", None, None, "tinylm's RoPE is unscaled")
    rope = f.data.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise TinylmError(f"{f.source}: rope_parameters must be an object, got {rope!r}")
    if rope.get("rope_type", "default") != "default":
        raise TinylmError(
            f"{f.source}: rope_type={rope.get('rope_type')!r} has no tinylm equivalent "
            "(tinylm's RoPE is unscaled); this checkpoint cannot be imported"
        )
    theta = rope.get("rope_theta", f.data.get("rope_theta", 10000.0))
    attention_bias = f.bool("attention_bias", False)
    f.expect("mlp_bias", attention_bias, False, "tinylm has one bias switch for both")
    hidden, heads = f.int("hidden_size"), f.int("num_attention_heads")
    head_dim = f.int("head_dim", None, optional=True)
    if head_dim is not None and head_dim * heads != hidden:
        raise TinylmError(
            f"{f.source}: head_dim={head_dim} with {heads} heads is not hidden_size {hidden} "
            "(tinylm's head size is n_embd / n_head); this checkpoint cannot be imported"
        )
    return _build(
        f,
        vocab_size=f.int("vocab_size"),
        block_size=f.int("max_position_embeddings"),
        n_layer=f.int("num_hidden_layers"),
        n_embd=hidden,
        n_head=heads,
        n_kv_head=_kv_heads(f.int("num_key_value_heads", heads), heads),
        d_ff=f.int("intermediate_size"),
        position="rope",
        rope_theta=_Fields({"rope_theta": theta}, f.source).float("rope_theta"),
        activation="swiglu",
        norm="rmsnorm",
        norm_eps=f.float("rms_norm_eps", 1e-6),
        tie_embeddings=f.bool("tie_word_embeddings", False),
        bias=attention_bias,
    )


def _kv_heads(kv_heads: int, heads: int) -> int | None:
    """tinylm spells multi-head attention ``n_kv_head=None``."""
    return None if kv_heads == heads else kv_heads


def _build(f: _Fields, **fields: Any) -> ModelConfig:
    """The ModelConfig, with tinylm's own validation errors attributed to the file."""
    try:
        return ModelConfig(norm_placement="pre", dropout=0.0, **fields)
    except TinylmError as exc:
        raise TinylmError(f"{f.source}: {exc}") from None
