"""A trained model from disk: the checkpoint a path means, rebuilt and ready to use.

``load_model("runs/small")`` takes a run folder (its latest checkpoint, or its best
with ``which="best"``) or a checkpoint folder, and returns the model with its
weights in eval mode, the tokenizer saved beside them, and the checkpoint's
metadata (see :func:`tinylm.checkpoint.read_checkpoint_meta`).
``load_chat_model`` does the same for a chat model, with its chat template.

A checkpoint ``tinylm quantize`` wrote (int8 or bfloat16 weights,
:mod:`tinylm.inference.quantized_run`) loads as a float32 ``GPT`` holding the
dequantised weights, so eval, inspect and export read it like any other;
:func:`load_engine` decodes an int8 one with its stored int8 weights.
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
from tinylm.inference.engine import DecodeEngine
from tinylm.inference.quantized_run import Int8Weights, check_quantized_fits, load_quantized
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
    A quantised checkpoint's model holds its weights dequantised to float32.
    """
    model, tokenizer, meta, _ = _load(path, device, which, require_tokenizer)
    return model, tokenizer, meta


def load_engine(
    path: str | os.PathLike,
    device: str = "cpu",
    which: str = "latest",
    weights: str | None = None,
    *,
    require_tokenizer: bool = False,
) -> tuple[DecodeEngine, GPT, Tokenizer | None, CheckpointMeta]:
    """``(engine, model, tokenizer, meta)``: :func:`load_model` and a ``DecodeEngine`` over it.

    ``weights`` defaults to the checkpoint's own format (float32 for a trained run).
    An int8 checkpoint decoded at int8 uses its stored int8 weights and scales, so
    its tokens equal those of the float run it was made from decoded at int8.
    """
    model, tokenizer, meta, int8 = _load(path, device, which, require_tokenizer)
    weights = meta.weights if weights is None else weights
    return DecodeEngine(model, weights, int8=int8 or None), model, tokenizer, meta


def _load(
    path: str | os.PathLike, device: str, which: str, require_tokenizer: bool
) -> tuple[GPT, Tokenizer | None, CheckpointMeta, Int8Weights]:
    folder = resolve_model_checkpoint(path, which)
    meta = read_checkpoint_meta(folder)
    if not isinstance(meta.model_config, dict):
        raise TinylmError(f"checkpoint {folder} has no model config; it cannot be rebuilt")
    model = model_for_checkpoint(folder, meta.model_config, weights=meta.weights)
    int8: Int8Weights = {}
    if meta.weights == "float32":
        load_checkpoint(folder, model)
    else:
        int8 = load_quantized(folder, model, meta.weights)
    model.to(device).eval()
    if meta.tokenizer_file is None:
        if require_tokenizer:
            raise TinylmError(
                f"checkpoint {folder} has no tokenizer.json, so text cannot be encoded or "
                "written; point at a checkpoint saved with its tokenizer"
            )
        return model, None, meta, int8
    tokenizer = load_tokenizer(meta.tokenizer_file)
    if tokenizer.vocab_size > model.config.vocab_size:  # its ids would index past the table
        raise TinylmError(
            f"checkpoint {folder}'s tokenizer.json has {tokenizer.vocab_size:,} ids but its model "
            f"only {model.config.vocab_size:,}; they do not belong together: put back the "
            "tokenizer the model was trained with"
        )
    return model, tokenizer, meta, int8


def model_for_checkpoint(
    folder: str | os.PathLike, config: dict[str, Any], *, weights: str = "float32"
) -> GPT:
    """A fresh GPT built from ``config``, once the checkpoint's weights are known to fit it.

    The model is first built on torch's ``meta`` device (shapes, no memory) and
    compared with the weights' header, so a config edited to ask for a huge
    vocabulary, or one that does not match the weights, is refused before
    anything is allocated. ``weights`` is the checkpoint's stored format.
    """
    model_config = ModelConfig.from_dict(config)
    with meta_device():
        skeleton = GPT(model_config)
    if weights == "float32":
        check_fits(folder, skeleton)
    else:
        check_quantized_fits(Path(folder), skeleton, weights)
    return GPT(model_config)


def load_chat_model(
    path: str | os.PathLike, device: str = "cpu", which: str = "latest", weights: str | None = None
) -> tuple[DecodeEngine, Tokenizer, ChatTemplate]:
    """``(engine, tokenizer, template)`` of a chat run or checkpoint (``tinylm chat``).

    The engine is :func:`load_engine`'s (``weights=None``: the checkpoint's own
    format). A run without a ``chat_template.json`` continues text but was never
    taught the turns of a conversation: an error that says how to fine-tune it.
    """
    engine, _, tokenizer, meta = load_engine(path, device, which, weights, require_tokenizer=True)
    assert tokenizer is not None  # require_tokenizer
    template = load_chat_template(meta.chat_template_file, tokenizer)
    if template is None:
        raise NoChatTemplate(path)
    return engine, tokenizer, template


class NoChatTemplate(TinylmError):
    """A run that continues text but was never fine-tuned on conversations.

    The message says what to do in the library's words (train with ``init_from``
    on ``chat:`` data); the CLI, which spells commands, adds the command line.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        super().__init__(no_chat_template(path))


def no_chat_template(path: str | os.PathLike) -> str:
    """The one line that says a run has no chat template, and how to give it one."""
    return (
        f"{path} has no chat template: it continues text but was not fine-tuned "
        f"on conversations; fine-tune it with chat data first (train with init_from={path} "
        "on the data chat:builtin, as docs/chat.md shows)"
    )
