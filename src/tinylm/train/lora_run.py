"""LoRA fine-tuning as a run: which weights train, what a checkpoint holds, how a resume rebuilds.

A run started from a checkpoint with ``lora_rank`` > 0 wraps the loaded base with
:func:`tinylm.model.lora.add_lora`: every base weight is frozen and only the
adapters' ``A`` and ``B`` train (the optimiser sees just them: ``GPT.param_roles``
lists trainable parameters only, and ``A``/``B`` are matrices like any other).

**New tokens train in full.** A chat fine-tune grows the vocabulary for the turn
tokens (``tinylm.model.grow_vocab``): their rows start as the mean of the old
ones, all alike, so a frozen table could never tell ``<|user|>`` from
``<|end|>`` and never learn to predict the end of a reply. When the vocabulary
grew, the token table and an untied head therefore train too, as whole tensors
(the rule PEFT calls ``modules_to_save``). Without growth nothing but the adapters
moves.

**A checkpoint** of such a run is an ordinary checkpoint whose ``model.safetensors``
holds the *merged* weights (``W + (alpha/r) B A``), so ``sample``, ``chat``, ``eval``,
``export`` and ``serve`` read it like any other. Beside them it holds the adapter's
two files (``tinylm.checkpoint.adapter``): ``A`` and ``B``, the settings, and the
base checkpoint's identity (path, size and SHA-256 of its weights). The folder is
thus an adapter folder too (``tinylm lora merge|export`` take it).

**Resume** needs the frozen weights exactly, and the merged ones are rounded
sums: it reads them from the base the adapter names (its bytes checked against the
recorded SHA-256), everything else (the trained token table and head included) from
the checkpoint's merged weights, where they are exact, and ``A``/``B`` from the
adapter file. The optimiser's state covers the trainable tensors only, as saved.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tinylm.checkpoint.adapter import (
    AdapterMeta,
    check_base,
    load_adapter_tensors,
    read_adapter_meta,
)
from tinylm.checkpoint.save_load import load_checkpoint, read_checkpoint_meta
from tinylm.checkpoint.tensor_files import load_tensors
from tinylm.errors import TinylmError
from tinylm.inference.loading import model_for_checkpoint
from tinylm.model.gpt import GPT
from tinylm.model.lora import LoraConfig, add_lora, lora_layers
from tinylm.run_layout import MODEL_FILE


def add_run_adapters(model: GPT, lora: LoraConfig, base_vocab_size: int) -> GPT:
    """``add_lora``; when the model grew past the base's ``base_vocab_size``, the token
    table and head train too (see the module docstring). Returns ``model``."""
    add_lora(model, lora)
    if model.config.vocab_size > base_vocab_size:
        model.tok_emb.weight.requires_grad_(True)
        model.lm_head.weight.requires_grad_(True)  # the same tensor when tied
    return model


def trainable_names(model: GPT) -> list[str]:
    """The names of the parameters that train, in module order (for the logs and tests)."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def rebuild_lora_model(checkpoint: Path, model: dict, lora: LoraConfig) -> tuple[GPT, AdapterMeta]:
    """The model a LoRA run held when it saved ``checkpoint``, bit for bit, and its adapter.

    ``model`` is the run's model config; ``lora`` its settings, which must be the
    checkpoint's own.
    """
    meta = read_adapter_meta(checkpoint)
    if meta.lora != lora:
        raise TinylmError(
            f"checkpoint {checkpoint} holds an adapter with other settings ({meta.lora}) "
            "than the run's; resume without changing the lora settings"
        )
    if not meta.base.path.exists():
        raise TinylmError(
            f"the LoRA run's base {meta.base.path} is gone, and a resume needs its exact "
            "weights; put it back (or train a new run from this checkpoint with init_from)"
        )
    check_base(meta, meta.base.path)
    gpt = model_for_checkpoint(checkpoint, model)
    load_checkpoint(checkpoint, gpt)  # merged: exact for every tensor an adapter did not touch
    base_vocab = int(read_checkpoint_meta(meta.base.path).model_config["vocab_size"])
    add_run_adapters(gpt, lora, base_vocab)
    base_weights, _ = load_tensors(meta.base.path / MODEL_FILE)
    with torch.no_grad():  # the frozen weights under each adapter: the base's, not merged
        for name, layer in lora_layers(gpt):
            layer.base.weight.copy_(base_weights[f"{name}.weight"])
    load_adapter_tensors(meta, gpt)
    return gpt, meta
