"""A Hugging Face chat model folder, read for a conversation: weights, tokenizer, chat template.

``tinylm chat DIR`` talks to a Hub-style folder directly: the model and tokenizer
come through :func:`tinylm.interop.hf_import.read_hf_checkpoint` (the same checks
as ``tinylm import``), the conversation layout from the folder's own Jinja
template (:mod:`tinylm.chat.hf_template`). Nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tinylm.chat.hf_template import HFChatTemplate, load_hf_chat_template
from tinylm.errors import TinylmError
from tinylm.interop.hf_import import CONFIG, read_hf_checkpoint
from tinylm.run_layout import RUN_FILE, STATE_FILE
from tinylm.tokenizers.base import Tokenizer


def is_hf_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Hugging Face checkpoint folder, not a tinylm run or checkpoint.

    Both kinds hold ``config.json`` and ``model.safetensors``; a tinylm run has
    ``run.json`` and a tinylm checkpoint ``state.json``.
    """
    path = Path(path)
    tinylm = (path / RUN_FILE).is_file() or (path / STATE_FILE).is_file()
    return path.is_dir() and (path / CONFIG).is_file() and not tinylm


def read_hf_chat_model(
    folder: str | os.PathLike, device: str = "cpu"
) -> tuple[Any, Tokenizer, HFChatTemplate | None]:
    """``(model in eval mode on device, tokenizer, chat template or None)`` of an HF folder."""
    model, tokenizer, info = read_hf_checkpoint(folder)
    if tokenizer is None:
        raise TinylmError(
            f"{folder}'s tokenizer cannot be read by tinylm ({info['tokenizer_note']}), so "
            "there is nothing to chat with; use a model with a byte-level BPE tokenizer"
        )
    return model.to(device).eval(), tokenizer, load_hf_chat_template(folder, tokenizer)
