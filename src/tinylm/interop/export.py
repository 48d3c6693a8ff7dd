"""Writing a tinylm model out: a Hugging Face folder, a GGUF file, or a tiktoken vocabulary.

Each format is one folder, built under a temporary name and renamed into place
(``tinylm.fileio.atomic_directory``), so a refused or interrupted export leaves
nothing behind. Refusals (a configuration with no equivalent, a tokenizer the
format cannot hold) happen before anything is written.

* ``hf``: ``config.json``, ``model.safetensors``, ``generation_config.json``,
  ``tokenizer.json`` and ``tokenizer_config.json``, which
  ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``
  load offline (``hf_config``, ``hf_weights``, ``hf_tokenizer``). A chat model's
  adds tinylm's chat layout as the Jinja ``chat_template`` and ``<|end|>`` as the
  end of generation, so ``apply_chat_template`` + ``generate`` converse as
  ``tinylm chat`` does.
* ``gguf``: ``model.gguf`` with the tokenizer inside (``gguf_export``); with
  ``quant="q8_0"`` its weight matrices are Q8_0 blocks (``gguf_q8_0``).
* ``tiktoken``: ``tokenizer.tiktoken`` and ``tiktoken.json`` (``tiktoken_export``).
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from tinylm.chat.template import END, ChatTemplate
from tinylm.checkpoint.tensor_files import write_safetensors
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_directory
from tinylm.interop.gguf_export import GGUF_FILE, check_gguf, write_gguf
from tinylm.interop.hf_config import hf_architecture, to_hf_config
from tinylm.interop.hf_tokenizer import (
    special_names,
    to_hf_tokenizer_config,
    to_hf_tokenizer_json,
)
from tinylm.interop.hf_weights import to_hf_state_dict
from tinylm.interop.tiktoken_export import RANKS_FILE, SPEC_FILE, tiktoken_files
from tinylm.tokenizers.base import Tokenizer

FORMATS = ("hf", "gguf", "tiktoken")
#: The file every export folder holds: how a re-export recognises a folder as its own.
#: Not ``config.json`` or ``model.gguf``: a checkpoint, someone's Hugging Face download
#: or a llama.cpp folder hold those too, and exporting over them would delete their files.
MARKER = "tinylm-export.json"


def export_model(
    model: nn.Module,
    tokenizer: Tokenizer | None,
    out: str | os.PathLike,
    fmt: str,
    quant: str | None = None,
    chat: bool = False,
) -> list[Path]:
    """Write ``model`` (a ``GPT``) and its tokenizer to folder ``out`` as ``fmt``; list files.

    ``quant`` (``q8_0``) quantises a ``gguf`` export's weight matrices; no other
    format takes one. ``chat``: the model was fine-tuned on conversations (its
    checkpoint holds ``chat_template.json``); an ``hf`` export then carries the
    template (the other formats hold the vocabulary and weights only).
    """
    if fmt not in FORMATS:
        raise TinylmError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if quant is not None and fmt != "gguf":
        raise TinylmError(f"a quantisation ({quant}) is for the gguf format, not {fmt}; drop it")
    if tokenizer is None:
        raise TinylmError(
            "this checkpoint has no tokenizer; an export needs one to be usable elsewhere"
        )
    if chat:
        ChatTemplate(tokenizer)  # refuses, in one line, a tokenizer without the chat tokens
    gguf_write, gguf_check = partial(_write_gguf, quant=quant), partial(_check_gguf, quant=quant)
    hf_write = partial(_write_hf, chat=chat)
    writers = {"hf": hf_write, "gguf": gguf_write, "tiktoken": _write_tiktoken}
    check = {"hf": _check_hf, "gguf": gguf_check, "tiktoken": _check_tiktoken}
    check[fmt](model, tokenizer)  # refuse before touching the disk
    out = Path(out)
    record = {"format": fmt, "written_by": "tinylm export"}
    with atomic_directory(out, MARKER, "tinylm export") as tmp:
        writers[fmt](model, tokenizer, tmp)
        _json(tmp / MARKER, record if quant is None else {**record, "quant": quant})
        names = sorted(p.name for p in tmp.iterdir())
    return [out / name for name in names]


def _json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- hf -----------------------------------------------------------------------------------


def _check_hf(model: nn.Module, tokenizer: Tokenizer) -> None:
    hf_architecture(model.config)
    _check_vocab(model, tokenizer)


def _check_vocab(model: nn.Module, tokenizer: Tokenizer) -> None:
    if tokenizer.vocab_size > model.config.vocab_size:
        raise TinylmError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
            f"{model.config.vocab_size}; they do not belong together"
        )


def _write_hf(model: nn.Module, tokenizer: Tokenizer, folder: Path, chat: bool) -> None:
    config = model.config
    family = hf_architecture(config)
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    _json(folder / "config.json", to_hf_config(config, bos, eos))
    tensors = to_hf_state_dict(model.state_dict(), config, family)
    # Written as a checkpoint's are: a full disk is an OSError that atomic_directory
    # reports in one line (safetensors' own save_file raises a SafetensorError).
    write_safetensors(tensors, folder / "model.safetensors", {"format": "pt"})
    generation: dict[str, Any] = {"bos_token_id": bos, "eos_token_id": eos}
    if chat:  # a reply ends at <|end|>, or at the end of a document, as tinylm chat's does
        end = tokenizer.special_tokens[END]
        generation["eos_token_id"] = [end] if eos is None or eos == end else [end, eos]
    if tokenizer.pad_id is not None:
        generation["pad_token_id"] = tokenizer.pad_id
    _json(folder / "generation_config.json", generation)
    _json(folder / "tokenizer.json", to_hf_tokenizer_json(tokenizer))
    tokenizer_config = to_hf_tokenizer_config(tokenizer, config.block_size, chat)
    _json(folder / "tokenizer_config.json", tokenizer_config)
    names = special_names(tokenizer, chat)
    _json(
        folder / "special_tokens_map.json",
        {f"{role}_token": name for role, name in names.items() if name is not None},
    )


# -- gguf ---------------------------------------------------------------------------------


def _check_gguf(model: nn.Module, tokenizer: Tokenizer, quant: str | None) -> None:

    check_gguf(model.config, tokenizer, quant)


def _write_gguf(model: nn.Module, tokenizer: Tokenizer, folder: Path, quant: str | None) -> None:

    write_gguf(folder / GGUF_FILE, model.state_dict(), model.config, tokenizer, quant)


# -- tiktoken -----------------------------------------------------------------------------


def _check_tiktoken(model: nn.Module, tokenizer: Tokenizer) -> None:

    tiktoken_files(tokenizer)


def _write_tiktoken(model: nn.Module, tokenizer: Tokenizer, folder: Path) -> None:

    ranks, spec = tiktoken_files(tokenizer)
    (folder / RANKS_FILE).write_text(ranks, encoding="ascii")
    _json(folder / SPEC_FILE, spec)
