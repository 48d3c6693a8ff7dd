"""A LoRA adapter in the PEFT format, on top of the Hugging Face export of its base.

PEFT (Hugging Face's adapter library) reads a folder of two files:
``adapter_config.json`` (a ``LoraConfig``: ``r``, ``lora_alpha``, ``lora_dropout``,
``target_modules``, ...) and ``adapter_model.safetensors``, whose tensors are named
``base_model.model.<module of the HF model>.lora_A.weight`` (``(r, in)``) and
``.lora_B.weight`` (``(out, r)``), and it computes ``base(x) + (alpha / r) *
lora_B(lora_A(dropout(x)))``: the same formula as ``tinylm.model.lora``. So most
adapters carry over unchanged, renamed to the modules ``hf_weights`` maps ours to.
Two do not:

* **GPT-2's fused ``c_attn``** computes ``[q | k | v]`` with one matrix, so it takes
  one adapter where tinylm has up to three. Stacking the ``k`` targeted ``A``s
  (``(k r, in)``) and placing each ``B`` in its own rows and columns of a
  ``(3 n_embd, k r)`` matrix gives ``B A`` = the three corrections side by side,
  exactly: a rank-``k r`` adapter whose untargeted blocks are zero. Its scale must
  stay ``alpha / r``, so ``rank_pattern`` and ``alpha_pattern`` give ``c_attn``
  rank ``k r`` and alpha ``k alpha``. (In training the three would share one
  dropout mask; an export is for inference, where dropout is off.)
* **Llama's RoPE layout**: the export renumbers the rows of ``q_proj`` and
  ``k_proj`` (``hf_weights.interleaved_to_halves``). The correction ``B A`` must be
  renumbered alike, and permuting the rows of ``B`` does exactly that.

``fan_in_fan_out`` is set for GPT-2 (its ``Conv1D`` stores weights ``(in, out)``);
PEFT's ``A`` and ``B`` keep the ``nn.Linear`` layout either way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tinylm.checkpoint.tensor_files import write_safetensors
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_directory
from tinylm.interop.export import MARKER
from tinylm.interop.hf_config import hf_architecture
from tinylm.interop.hf_weights import interleaved_to_halves
from tinylm.model.lora import LoraConfig, lora_state_dict

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."

#: tinylm projection -> the HF module (inside a layer) that computes it.
GPT2_MODULES = {
    "attn.w_o": "attn.c_proj",
    "ffn.w1": "mlp.c_fc",
    "ffn.w2": "mlp.c_proj",
}
QKV = ("attn.w_q", "attn.w_k", "attn.w_v")  # GPT-2's c_attn, in this order
LLAMA_MODULES = {
    "attn.w_q": "self_attn.q_proj",
    "attn.w_k": "self_attn.k_proj",
    "attn.w_v": "self_attn.v_proj",
    "attn.w_o": "self_attn.o_proj",
    "ffn.w": "mlp.gate_proj",
    "ffn.v": "mlp.up_proj",
    "ffn.w2": "mlp.down_proj",
}


def peft_adapter(model: nn.Module, lora: LoraConfig) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, adapter_config)`` in PEFT's format for ``model`` (a GPT with adapters)."""
    config = model.config
    family = hf_architecture(config)
    state = lora_state_dict(model)
    # "blocks.3.attn.w_q.lora_a" -> "attn.w_q": what every block has an adapter on
    projections = sorted({".".join(name.split(".")[2:4]) for name in state})
    if not projections:
        raise TinylmError("this model has no LoRA adapters to export; add_lora it first")
    tensors: dict[str, Tensor] = {}
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, float] = {}
    if family == "gpt2":
        layer, modules = "transformer.h", GPT2_MODULES
        fused = [p for p in QKV if p in projections]
        if fused:
            for i in range(config.n_layer):
                a, b = _fused_qkv(state, i, fused, config.n_embd)
                tensors[f"{PREFIX}{layer}.{i}.attn.c_attn.lora_A.weight"] = a
                tensors[f"{PREFIX}{layer}.{i}.attn.c_attn.lora_B.weight"] = b
            if len(fused) > 1:
                rank_pattern["attn.c_attn"] = len(fused) * lora.rank
                alpha_pattern["attn.c_attn"] = len(fused) * lora.alpha
        targets = ["attn.c_attn"] if fused else []
        separate = [p for p in projections if p not in QKV]
    else:
        layer, modules, targets, separate = "model.layers", LLAMA_MODULES, [], projections
    for proj in separate:
        targets.append(modules[proj])
        for i in range(config.n_layer):
            a, b = state[f"blocks.{i}.{proj}.lora_a"], state[f"blocks.{i}.{proj}.lora_b"]
            if family == "llama" and proj in ("attn.w_q", "attn.w_k"):
                heads = config.n_head if proj == "attn.w_q" else config.kv_heads
                b = interleaved_to_halves(b, heads)
            hf = f"{PREFIX}{layer}.{i}.{modules[proj]}"
            tensors[f"{hf}.lora_A.weight"] = a.contiguous().cpu()
            tensors[f"{hf}.lora_B.weight"] = b.contiguous().cpu()
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": None,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": sorted(targets),
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "fan_in_fan_out": family == "gpt2",
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
    }
    return tensors, adapter_config


def _fused_qkv(
    state: dict[str, Tensor], i: int, fused: list[str], width: int
) -> tuple[Tensor, Tensor]:
    """One ``c_attn`` adapter equal to the targeted q/k/v adapters of layer ``i``."""
    a_parts = [state[f"blocks.{i}.{p}.lora_a"] for p in fused]
    rank = a_parts[0].shape[0]
    b = torch.zeros(3 * width, rank * len(fused), dtype=a_parts[0].dtype)
    for column, proj in enumerate(fused):
        row = QKV.index(proj)
        block = state[f"blocks.{i}.{proj}.lora_b"].cpu()
        b[row * width : (row + 1) * width, column * rank : (column + 1) * rank] = block
    return torch.cat(a_parts).contiguous().cpu(), b


def export_peft(
    model: nn.Module,
    lora: LoraConfig,
    out: str | os.PathLike,
    base_name_or_path: str | None = None,
) -> list[Path]:
    """Write folder ``out``: ``adapter_config.json`` + ``adapter_model.safetensors``; list files.

    ``base_name_or_path`` is what the config names as the base (the folder of
    the base's Hugging Face export); PEFT itself loads onto whichever model it
    is given.
    """
    tensors, adapter_config = peft_adapter(model, lora)
    adapter_config["base_model_name_or_path"] = base_name_or_path
    out = Path(out)
    with atomic_directory(out, MARKER, "tinylm export") as tmp:
        write_safetensors(tensors, tmp / WEIGHTS_FILE, {"format": "pt"})
        text = json.dumps(adapter_config, indent=2) + "\n"
        (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")
        marker = {"format": "peft", "written_by": "tinylm lora export"}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        names = sorted(p.name for p in tmp.iterdir())
    return [out / name for name in names]
