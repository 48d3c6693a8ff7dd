"""A trained model from disk: the checkpoint a path means, rebuilt and ready to use.

``load_model("runs/small")`` takes a run folder (its latest checkpoint, or its best
with ``which="best"``) or a checkpoint folder, and returns the model with its
weights in eval mode, the tokenizer saved beside them, and the checkpoint's
metadata (see :func:`tinylm.checkpoint.read_checkpoint_meta`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tinylm.checkpoint import (
    CheckpointManager,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
)
from tinylm.errors import TinylmError
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.spec import load_tokenizer_file

WHICH = ("latest", "best")


def resolve_model_checkpoint(path: str | os.PathLike, which: str = "latest") -> Path:
    """A checkpoint folder from a checkpoint or run folder (``which``: latest or best)."""
    if which not in WHICH:
        raise TinylmError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    path = Path(path)
    if which == "best" and path.is_dir():
        best = CheckpointManager(path).best()
        if best is not None:
            return best
    return resolve_checkpoint(path)


def load_model(
    path: str | os.PathLike,
    device: str = "cpu",
    which: str = "latest",
    *,
    require_tokenizer: bool = False,
) -> tuple[GPT, Tokenizer | None, dict[str, Any]]:
    """``(model, tokenizer, meta)`` from a checkpoint or run folder, weights loaded, eval mode.

    The tokenizer is ``None`` for a checkpoint saved without one, unless
    ``require_tokenizer`` makes that an error (text can be neither encoded nor written).
    """
    folder = resolve_model_checkpoint(path, which)
    meta = read_checkpoint_meta(folder)
    if not isinstance(meta.get("config"), dict):
        raise TinylmError(f"checkpoint {folder} has no model config; it cannot be rebuilt")
    model = GPT(ModelConfig.from_dict(meta["config"]))
    load_checkpoint(folder, model)
    model.to(device).eval()
    if meta.get("tokenizer") is None:
        if require_tokenizer:
            raise TinylmError(
                f"checkpoint {folder} has no tokenizer.json, so text cannot be encoded or "
                "written; point at a checkpoint saved with its tokenizer"
            )
        return model, None, meta
    return model, load_tokenizer_file(meta["tokenizer"]), meta
