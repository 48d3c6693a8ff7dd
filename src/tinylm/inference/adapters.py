"""A base model with its LoRA adapter, from disk: loaded together, or merged into a new run.

``load_adapted("runs/chat-lora/adapter")`` reads the adapter's settings, loads the
base checkpoint it names (or the one given, whose weights must be the same
bytes), wraps the base with :func:`tinylm.model.lora.add_lora` and copies the
adapter's tensors in: the model computes exactly what it computed in training.

``merge_adapter_into_run(adapter, out)`` then folds the adapters into the base
weights (:func:`tinylm.model.lora.merge_lora`) and writes an ordinary run folder
(``run.json`` + one checkpoint, tokenizer and chat template copied from the base),
which ``sample``, ``eval``, ``export`` and ``serve`` take like any other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from tinylm.chat.template import load_chat_template, template_record
from tinylm.checkpoint import save_checkpoint
from tinylm.checkpoint.adapter import (
    AdapterMeta,
    check_base,
    load_adapter_tensors,
    read_adapter_meta,
)
from tinylm.checkpoint.meta import CheckpointMeta
from tinylm.checkpoint.save_load import read_checkpoint_meta
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_directory
from tinylm.inference.loading import load_model
from tinylm.model.lora import add_lora, merge_lora
from tinylm.run_layout import RUN_FILE, STATE_FILE, checkpoint_name, step_checkpoints
from tinylm.tokenizers.base import Tokenizer


def load_adapted(
    adapter: str | os.PathLike,
    base: str | os.PathLike | None = None,
    device: str = "cpu",
) -> tuple[nn.Module, Tokenizer | None, CheckpointMeta, AdapterMeta]:
    """``(model with adapters, tokenizer, base meta, adapter meta)``, eval mode.

    ``base`` defaults to the path the adapter recorded; either way its weights must
    be the ones the adapter was trained on (same size and SHA-256).
    """
    meta = read_adapter_meta(adapter)
    base_path = meta.base.path if base is None else Path(base)
    if base is None and not base_path.exists():
        raise TinylmError(
            f"adapter {meta.path}'s base {base_path} is gone; give the base checkpoint's "
            "new location"
        )
    check_base(meta, base_path)
    _refuse_grown_run(meta)
    model, tokenizer, base_meta = load_model(base_path, "cpu")
    add_lora(model, meta.lora)
    load_adapter_tensors(meta, model)
    return model.to(device).eval(), tokenizer, base_meta, meta


def _refuse_grown_run(meta: AdapterMeta) -> None:
    """A LoRA run's checkpoint (an adapter folder too) whose vocabulary grew for chat tokens
    trained the token table as well: ``A`` and ``B`` on the base would lack it."""
    if not (meta.path / STATE_FILE).is_file():
        return  # a folder save_adapter wrote: adapters only
    grown = read_checkpoint_meta(meta.path).model_config or {}
    base = read_checkpoint_meta(meta.base.path).model_config or {}
    if grown.get("vocab_size") != base.get("vocab_size"):
        raise TinylmError(
            f"{meta.path} is a LoRA run's checkpoint that grew the vocabulary (chat tokens) "
            "and trained the token table with the adapters; it already holds the whole "
            "fine-tuned model, so use the checkpoint itself instead of its adapter"
        )


def merge_adapter_into_run(
    adapter: str | os.PathLike, out: str | os.PathLike, base: str | os.PathLike | None = None
) -> Path:
    """Write run ``out``: the base with the adapter folded in; return its checkpoint folder.

    ``out`` must not hold a run already. The checkpoint carries the base's step.
    """
    out = Path(out)
    if step_checkpoints(out) or (out / RUN_FILE).exists():
        raise TinylmError(f"{out} already holds a run; choose a new output folder")
    model, tokenizer, base_meta, meta = load_adapted(adapter, base)
    merge_lora(model)
    chat = None
    if base_meta.chat_template_file is not None and tokenizer is not None:
        load_chat_template(base_meta.chat_template_file, tokenizer)  # checked, then carried
        chat = template_record()
    name = checkpoint_name(base_meta.step)
    with atomic_directory(out, RUN_FILE, "tinylm run") as tmp:
        save_checkpoint(
            tmp / name, model, None, base_meta.step, tokenizer=tokenizer, chat_template=chat
        )
        run = {
            "merged_from": {"adapter": str(meta.path), "base": str(base_meta.path)},
            "lora": meta.lora.to_dict(),
            "model": model.config.to_dict(),
        }
        (tmp / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return out / name
