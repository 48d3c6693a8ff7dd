"""A trained model from disk: the checkpoint a path means, rebuilt and ready to use.

``load_model("runs/small")`` takes a run folder (its latest checkpoint, or its best
with ``which="best"``) or a checkpoint folder, and returns the model with its
weights in eval mode, the tokenizer saved beside them, and the checkpoint's
metadata (see :func:`tinylm.checkpoint.read_checkpoint_meta`).
``load_chat_model`` does the same for a chat model, with its chat template.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tinylm.chat.template import ChatTemplate, load_chat_template
from tinylm.checkpoint.manager import CheckpointManager
from tinylm.checkpoint.meta import CheckpointMeta
from tinylm.checkpoint.save_load import (
    check_fits,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
)
from tinylm.device import meta_device
from tinylm.errors import TinylmError
from tinylm.model import GPT, ModelConfig
from tinylm.run_layout import MODEL_FILE
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.formats import load_tokenizer

WHICH = ("latest", "best")


def resolve_model_checkpoint(path: str | os.PathLike, which: str = "latest") -> Path:
    """A checkpoint folder from a checkpoint or run folder (``which``: latest or best)."""
    if which not in WHICH:
        raise TinylmError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    path = Path(path)
    if which != "best" or (path / MODEL_FILE).is_file():
        return resolve_checkpoint(path)  # a checkpoint folder is its own best
    resolve_checkpoint(path)  # a missing or foreign folder gets its usual message
    best = CheckpointManager(path).best()  # a lost best/ is an error, never the latest
    if best is None:
        raise TinylmError(
            f"{path} has no best checkpoint: no evaluation was saved yet; use its latest "
            "checkpoint instead"
        )
    return best


def load_model(
    path: str | os.PathLike,
    device: str = "cpu",
    which: str = "latest",
    *,
    require_tokenizer: bool = False,
) -> tuple[GPT, Tokenizer | None, CheckpointMeta]:
    """``(model, tokenizer, meta)`` from a checkpoint or run folder, weights loaded, eval mode.

    The tokenizer is ``None`` for a checkpoint saved without one, unless
    ``require_tokenizer`` makes that an error (text can be neither encoded nor written).
    """
    folder = resolve_model_checkpoint(path, which)
    meta = read_checkpoint_meta(folder)
    if not isinstance(meta.model_config, dict):
        raise TinylmError(f"checkpoint {folder} has no model config; it cannot be rebuilt")
    model = model_for_checkpoint(folder, meta.model_config)
    load_checkpoint(folder, model)
    model.to(device).eval()
    if meta.tokenizer_file is None:
        if require_tokenizer:
            raise TinylmError(
                f"checkpoint {folder} has no tokenizer.json, so text cannot be encoded or "
                "written; point at a checkpoint saved with its tokenizer"
            )
        return model, None, meta
    tokenizer = load_tokenizer(meta.tokenizer_file)
    if tokenizer.vocab_size > model.config.vocab_size:  # its ids would index past the table
        raise TinylmError(
            f"checkpoint {folder}'s tokenizer.json has {tokenizer.vocab_size:,} ids but its model "
            f"only {model.config.vocab_size:,}; they do not belong together: put back the "
            "tokenizer the model was trained with"
        )
    return model, tokenizer, meta


def model_for_checkpoint(folder: str | os.PathLike, config: dict[str, Any]) -> GPT:
    """A fresh GPT built from ``config``, once the checkpoint's weights are known to fit it.

    The model is first built on torch's ``meta`` device (shapes, no memory) and
    compared with the weights' header, so a config edited to ask for a huge
    vocabulary, or one that does not match the weights, is refused before
    anything is allocated.
    """
    model_config = ModelConfig.from_dict(config)
    with meta_device():
        skeleton = GPT(model_config)
    check_fits(folder, skeleton)
    return GPT(model_config)


def load_chat_model(
    path: str | os.PathLike, device: str = "cpu", which: str = "latest"
) -> tuple[GPT, Tokenizer, ChatTemplate]:
    """``(model, tokenizer, template)`` of a chat run or checkpoint (``tinylm chat``, serve).

    A run without a ``chat_template.json`` continues text but was never taught the
    turns of a conversation: an error that says how to fine-tune it.
    """
    model, tokenizer, meta = load_model(path, device, which, require_tokenizer=True)
    assert tokenizer is not None  # require_tokenizer
    template = load_chat_template(meta.chat_template_file, tokenizer)
    if template is None:
        raise TinylmError(no_chat_template(path))
    return model, tokenizer, template


def no_chat_template(path: str | os.PathLike) -> str:
    """The one line that says a run has no chat template, and how to give it one."""
    return (
        f"{path} has no chat template: it continues text but was not fine-tuned "
        "on conversations; fine-tune it with chat data first: "
        f"tinylm train --init-from {path} --data chat:builtin --out DIR"
    )
