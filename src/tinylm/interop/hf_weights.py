"""Weights in Hugging Face's layout: tinylm's state dict <-> GPT-2's and Llama's tensor names.

The same numbers, arranged differently. Each mapping is exact (reshapes,
transposes, concatenations and row permutations only), so tinylm -> HF -> tinylm
gives back bit-identical tensors.

GPT-2 (``GPT2LMHeadModel``) stores its linear layers as ``Conv1D``: the weight is
``(in, out)``, the transpose of ``nn.Linear``'s ``(out, in)``; and one ``c_attn``
matrix holds query, key and value side by side (``[q | k | v]`` along ``out``).

Llama (``LlamaForCausalLM``) keeps separate ``q_proj``/``k_proj``/``v_proj`` in
``nn.Linear`` layout, but its RoPE rotates *halves*: feature ``j`` of a head pairs
with feature ``j + head_dim/2``. tinylm's RoPE (``model/rope.py``) rotates
*neighbours*: ``2i`` with ``2i + 1``, at the same frequency ``theta^(-2i/d)``.
Renumbering each head's query and key rows so that tinylm's row ``2i`` becomes
row ``i`` and row ``2i + 1`` becomes row ``i + head_dim/2`` makes HF rotate
exactly the pairs tinylm rotates; queries and keys are permuted alike, so every
score ``q . k`` is unchanged. Values and the output projection are untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tinylm.device import meta_device
from tinylm.errors import TinylmError
from tinylm.model.config import ModelConfig
from tinylm.model.gpt import GPT

# -- the RoPE row permutation ----------------------------------------------------------


def interleaved_to_halves(rows: Tensor, n_heads: int) -> Tensor:
    """Reorder each head's rows ``(0, 1, 2, 3, ...)`` -> ``(0, 2, 4, ..., 1, 3, 5, ...)``.

    ``rows`` is a weight ``(n_heads * head_dim, in)`` or a bias ``(n_heads * head_dim,)``.
    """
    rest = rows.shape[1:]
    head_dim = rows.shape[0] // n_heads
    per_pair = rows.reshape(n_heads, head_dim // 2, 2, *rest)
    return per_pair.transpose(1, 2).reshape(rows.shape).contiguous()


def halves_to_interleaved(rows: Tensor, n_heads: int) -> Tensor:
    """The inverse of :func:`interleaved_to_halves`."""
    rest = rows.shape[1:]
    head_dim = rows.shape[0] // n_heads
    per_half = rows.reshape(n_heads, 2, head_dim // 2, *rest)
    return per_half.transpose(1, 2).reshape(rows.shape).contiguous()


# -- one rule per HF tensor ---------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How one HF tensor is made from tinylm tensors (``ours``), and back.

    ``to_hf`` takes the tinylm tensors in order and returns the HF one;
    ``from_hf`` returns them from the HF one. Both are exact rearrangements.
    """

    hf: str
    ours: tuple[str, ...]
    to_hf: Callable[[list[Tensor]], Tensor]
    from_hf: Callable[[Tensor], list[Tensor]]


def _same(hf: str, ours: str) -> Rule:
    return Rule(hf, (ours,), lambda ts: ts[0], lambda t: [t])


def _transposed(hf: str, ours: str) -> Rule:
    """``nn.Linear`` ``(out, in)`` <-> GPT-2 ``Conv1D`` ``(in, out)``."""
    return Rule(hf, (ours,), lambda ts: ts[0].t(), lambda t: [t.t()])


def _rope_rows(hf: str, ours: str, n_heads: int) -> Rule:
    """A query or key projection (weight or bias): the RoPE row permutation."""
    return Rule(
        hf,
        (ours,),
        lambda ts: interleaved_to_halves(ts[0], n_heads),
        lambda t: [halves_to_interleaved(t, n_heads)],
    )


def _fused_qkv(hf: str, ours: tuple[str, str, str], widths: list[int], weight: bool) -> Rule:
    """GPT-2's ``c_attn``: ``[q | k | v]`` along the output axis, a weight stored ``(in, out)``."""
    if weight:
        return Rule(
            hf, ours, lambda ts: torch.cat(ts, dim=0).t(), lambda t: list(t.t().split(widths))
        )
    return Rule(hf, ours, lambda ts: torch.cat(ts), lambda t: list(t.split(widths)))


def rules(config: ModelConfig, family: str) -> list[Rule]:
    """Every tensor of the HF model equal to ``config``; a tied ``lm_head`` has none.

    transformers re-ties ``lm_head.weight`` to the embedding on load when
    ``tie_word_embeddings`` is set, so, as in its own files, it is stored once.
    """
    if family == "gpt2":
        table = _gpt2_rules(config)
    elif family == "llama":
        table = _llama_rules(config)
    else:
        raise TinylmError(f"unknown Hugging Face family {family!r}; use gpt2 or llama")
    if not config.tie_embeddings:
        table.append(_same("lm_head.weight", "lm_head.weight"))
    return table


def _gpt2_rules(config: ModelConfig) -> list[Rule]:
    table = [
        _same("transformer.wte.weight", "tok_emb.weight"),
        _same("transformer.wpe.weight", "pos_emb.weight"),
    ]
    widths = [config.n_embd, config.n_embd, config.n_embd]
    for i in range(config.n_layer):
        h, b = f"transformer.h.{i}", f"blocks.{i}"
        for kind in ("weight", "bias"):
            table += [
                _same(f"{h}.ln_1.{kind}", f"{b}.norm1.{kind}"),
                _same(f"{h}.ln_2.{kind}", f"{b}.norm2.{kind}"),
            ]
            qkv = (f"{b}.attn.w_q.{kind}", f"{b}.attn.w_k.{kind}", f"{b}.attn.w_v.{kind}")
            table.append(_fused_qkv(f"{h}.attn.c_attn.{kind}", qkv, widths, kind == "weight"))
            linear = _transposed if kind == "weight" else _same
            table += [
                linear(f"{h}.attn.c_proj.{kind}", f"{b}.attn.w_o.{kind}"),
                linear(f"{h}.mlp.c_fc.{kind}", f"{b}.ffn.w1.{kind}"),
                linear(f"{h}.mlp.c_proj.{kind}", f"{b}.ffn.w2.{kind}"),
            ]
    table += [
        _same("transformer.ln_f.weight", "final_norm.weight"),
        _same("transformer.ln_f.bias", "final_norm.bias"),
    ]
    return table


def _llama_rules(config: ModelConfig) -> list[Rule]:
    table = [_same("model.embed_tokens.weight", "tok_emb.weight")]
    kinds = ("weight", "bias") if config.bias else ("weight",)
    for i in range(config.n_layer):
        h, b = f"model.layers.{i}", f"blocks.{i}"
        table += [
            _same(f"{h}.input_layernorm.weight", f"{b}.norm1.weight"),
            _same(f"{h}.post_attention_layernorm.weight", f"{b}.norm2.weight"),
        ]
        for kind in kinds:
            table += [
                _rope_rows(f"{h}.self_attn.q_proj.{kind}", f"{b}.attn.w_q.{kind}", config.n_head),
                _rope_rows(f"{h}.self_attn.k_proj.{kind}", f"{b}.attn.w_k.{kind}", config.kv_heads),
                _same(f"{h}.self_attn.v_proj.{kind}", f"{b}.attn.w_v.{kind}"),
                _same(f"{h}.self_attn.o_proj.{kind}", f"{b}.attn.w_o.{kind}"),
                _same(f"{h}.mlp.gate_proj.{kind}", f"{b}.ffn.w.{kind}"),
                _same(f"{h}.mlp.up_proj.{kind}", f"{b}.ffn.v.{kind}"),
                _same(f"{h}.mlp.down_proj.{kind}", f"{b}.ffn.w2.{kind}"),
            ]
    table.append(_same("model.norm.weight", "final_norm.weight"))
    return table


# -- the two directions ------------------------------------------------------------------


def to_hf_state_dict(
    state: dict[str, Tensor], config: ModelConfig, family: str
) -> dict[str, Tensor]:
    """HF tensors (contiguous, ready for safetensors) from tinylm's ``model.state_dict()``."""
    return {
        rule.hf: rule.to_hf([state[name] for name in rule.ours]).contiguous()
        for rule in rules(config, family)
    }


def from_hf_state_dict(
    tensors: dict[str, Tensor], config: ModelConfig, family: str, source: str
) -> dict[str, Tensor]:
    """tinylm's state dict (float32) from HF tensors, each checked by name and shape.

    ``source`` names the checkpoint in errors. Tensors are converted to float32,
    tinylm's parameter dtype (a bfloat16 checkpoint widens exactly).
    """
    tensors = {_full_name(name, family): t for name, t in tensors.items()}
    table = rules(config, family)
    known = {rule.hf for rule in table}
    unknown = sorted(n for n in tensors if n not in known and not _ignorable(n, family))
    if unknown:
        raise TinylmError(
            f"{source} has tensor {unknown[0]!r}, which a {family} model of this config "
            "does not have; the weights do not match config.json"
        )
    shapes = _parameter_shapes(config)
    state: dict[str, Tensor] = {}
    for rule in table:
        if rule.hf not in tensors:
            raise TinylmError(
                f"{source} lacks tensor {rule.hf!r}; the checkpoint is incomplete or is not "
                f"a {family} model of this config"
            )
        hf = tensors[rule.hf]
        _check_weights(hf, rule.hf, source)
        wanted = tuple(rule.to_hf([torch.empty(shapes[n], device="meta") for n in rule.ours]).shape)
        if tuple(hf.shape) != wanted:
            raise TinylmError(
                f"{source}: tensor {rule.hf!r} has shape {tuple(hf.shape)}, not {wanted} as "
                "config.json implies; the weights and the config disagree"
            )
        for name, tensor in zip(rule.ours, rule.from_hf(hf.to(torch.float32)), strict=True):
            state[name] = tensor.contiguous().clone()
    if config.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    return state


def _check_weights(tensor: Tensor, name: str, source: str) -> None:
    """Weights are finite floating-point numbers: an int, bool or uint8 tensor is not a weight.

    Converting one to float32 would succeed silently, and the imported run would
    then sample text from numbers that were never trained.
    """
    if not tensor.is_floating_point():
        raise TinylmError(
            f"{source}: tensor {name!r} holds {str(tensor.dtype).removeprefix('torch.')} "
            "values, not floating-point weights; the checkpoint is damaged or not a model"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise TinylmError(
            f"{source}: tensor {name!r} holds NaN or infinite values; the checkpoint is "
            "damaged (or diverged in training) and cannot be imported"
        )


def _full_name(name: str, family: str) -> str:
    """OpenAI's own GPT-2 files name tensors without the ``transformer.`` prefix."""
    if family == "gpt2" and not name.startswith(("transformer.", "lm_head.")):
        return "transformer." + name
    return name


def _ignorable(name: str, family: str) -> bool:
    """Buffers older transformers saved beside the weights: causal masks, RoPE frequencies."""
    if family == "gpt2":
        return name.endswith((".attn.bias", ".attn.masked_bias"))
    return name.endswith(".rotary_emb.inv_freq")


def _parameter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tinylm parameter, from a model built on the meta device (no memory)."""

    with meta_device():
        model = GPT(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}
