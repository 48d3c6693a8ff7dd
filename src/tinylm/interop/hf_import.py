"""Reading a local Hugging Face GPT-2 or Llama checkpoint folder into a tinylm run.

A Hub-style folder holds ``config.json``, the weights as ``model.safetensors``
(or shards listed in ``model.safetensors.index.json``) and the tokenizer
(``tokenizer.json``, or GPT-2's ``vocab.json`` + ``merges.txt``). Everything in
it is untrusted: each config field that changes the arithmetic is checked
(``hf_config``), every tensor is matched by name and shape (``hf_weights``), and
shard names must be plain files inside the folder. Weights only in pickle form
(``pytorch_model.bin``) are refused without being opened: unpickling runs code.

The result is an ordinary run folder (``run.json`` + ``ckpt-000000``), which
``sample``, ``eval``, ``inspect`` and fine-tuning (``init_from``) accept. A tokenizer
that is not byte-level BPE (SentencePiece Llamas) cannot come along; the weights
still import, and the run says so.

A folder's Jinja ``chat_template`` that is tinylm's own layout (a chat model
``tinylm export`` wrote; :func:`tinylm.chat.hf_template.is_tinylm_layout`) makes
the run a chat run: its checkpoint gets ``chat_template.json``, so ``chat`` and
``serve`` render conversations as before the round trip. Any other template is
not carried (a run renders conversations with tinylm's layout only); ``info``
says so, and such a folder is chatted with as it is (``tinylm chat DIR``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from torch import Tensor

from tinylm.chat.hf_template import is_tinylm_layout, read_hf_chat_template
from tinylm.chat.template import template_record
from tinylm.checkpoint import save_checkpoint
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_directory
from tinylm.interop.hf_config import from_hf_config
from tinylm.interop.hf_weights import from_hf_state_dict
from tinylm.model.gpt import GPT
from tinylm.run.folder import is_existing_run
from tinylm.run_layout import RUN_FILE, checkpoint_name
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.formats import read_gpt2_files
from tinylm.tokenizers.hf_tokenizer_json import from_hf_tokenizer_json
from tinylm.untrusted_files import read_json

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def read_hf_checkpoint(folder: str | os.PathLike) -> tuple[Any, Tokenizer | None, dict[str, Any]]:
    """``(GPT model, tokenizer or None, info)`` from a local HF checkpoint folder.

    ``info`` has ``family`` (gpt2 or llama), ``source`` and ``tokenizer_note``
    (why no tokenizer came along, or None).
    """

    folder = Path(folder)
    if not folder.is_dir():
        raise TinylmError(f"{folder} is not a folder; give a Hugging Face checkpoint folder")
    family, config = from_hf_config(_read_json(folder / CONFIG), f"{folder / CONFIG}")
    tensors = read_safetensors(folder)
    state = from_hf_state_dict(tensors, config, family, str(folder))
    model = GPT(config)
    model.load_state_dict(state, strict=True)
    model.eval()
    tokenizer, note = read_hf_tokenizer(folder)
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise TinylmError(
            f"{folder}: the tokenizer has {tokenizer.vocab_size} ids but the model only "
            f"{config.vocab_size}; they do not belong together"
        )
    return model, tokenizer, {"family": family, "source": str(folder), "tokenizer_note": note}


def _read_json(path: Path) -> Any:
    return read_json(
        path,
        "the Hugging Face folder is damaged; fetch it again",
        missing=f"{path.parent} has no {path.name}; it is not a Hugging Face checkpoint folder",
    )


# -- weights ------------------------------------------------------------------------------


def read_safetensors(folder: Path) -> dict[str, Tensor]:
    """Every tensor of the folder's safetensors weights, single file or sharded."""
    if (folder / WEIGHTS).is_file():
        files = [folder / WEIGHTS]
    elif (folder / INDEX).is_file():
        files = _shards(folder)
    elif any((folder / name).exists() for name in PICKLES):
        raise TinylmError(
            f"{folder} has its weights only as pickle (pytorch_model.bin), which tinylm never "
            "opens (unpickling can run code); convert them to model.safetensors first"
        )
    else:
        raise TinylmError(f"{folder} has no {WEIGHTS} or {INDEX}; no weights to import")
    tensors: dict[str, Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as reader:
                for name in reader.keys():  # noqa: SIM118 - safe_open is not a mapping
                    if name in tensors:
                        raise TinylmError(f"{folder}: tensor {name!r} appears in two shards")
                    tensors[name] = reader.get_tensor(name)
        except (SafetensorError, OSError) as exc:
            raise TinylmError(f"{path} is not a readable safetensors file ({exc})") from None
    return tensors


def _shards(folder: Path) -> list[Path]:
    """The shard files an index names: plain file names in the folder, each present."""
    index = _read_json(folder / INDEX)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise TinylmError(f"{folder / INDEX} has no weight_map; the index is damaged")
    names = sorted(set(weight_map.values()))
    for name in names:
        if (
            not isinstance(name, str)
            or Path(name).name != name
            or not name.endswith(".safetensors")
        ):
            raise TinylmError(
                f"{folder / INDEX} names shard {name!r}, which is not a .safetensors file "
                "in the folder; the index is damaged or hostile"
            )
        if not (folder / name).is_file():
            raise TinylmError(f"{folder} lacks shard {name} that its index lists")
    return [folder / name for name in names]


# -- tokenizer ----------------------------------------------------------------------------


def read_hf_tokenizer(folder: Path) -> tuple[Tokenizer | None, str | None]:
    """The folder's tokenizer as a tinylm one, or ``(None, reason)``."""

    path = folder / "tokenizer.json"
    if path.is_file():
        try:
            return from_hf_tokenizer_json(_read_json(path), str(path)), None
        except TinylmError as exc:
            if not (folder / "vocab.json").is_file():
                return None, str(exc)
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return read_gpt2_files(folder / "vocab.json"), None
    return None, f"{folder} has no tokenizer.json or vocab.json + merges.txt"


# -- writing the run ----------------------------------------------------------------------


def import_hf(folder: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Read an HF checkpoint folder and write it as tinylm run ``out``; return the info.

    ``out`` must not hold a run already (a checkpoint is never overwritten silently).
    """

    out = Path(out)
    if is_existing_run(out):
        raise TinylmError(f"{out} already holds a run; choose a new output folder")
    model, tokenizer, info = read_hf_checkpoint(folder)
    chat = _chat_template(Path(folder), tokenizer, info)
    with atomic_directory(out, RUN_FILE, "tinylm run") as tmp:
        save_checkpoint(
            tmp / checkpoint_name(0), model, None, 0, tokenizer=tokenizer, chat_template=chat
        )
        run = {
            "imported_from": info["source"],
            "architecture": info["family"],
            "model": model.config.to_dict(),
            "tokenizer_note": info["tokenizer_note"],
        }
        (tmp / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    info["params"] = sum(p.numel() for p in model.parameters())
    info["tokenizer"] = tokenizer is not None
    return info


def _chat_template(
    folder: Path, tokenizer: Tokenizer | None, info: dict[str, Any]
) -> dict[str, Any] | None:
    """The run's ``chat_template.json`` record when the folder's template is tinylm's layout.

    Sets ``info["chat"]``: ``"tinylm"`` (carried), ``"other"`` (a template that
    is not carried) or ``None`` (the folder has none). A template that cannot be
    read is not carried either: the weights and tokenizer still import.
    """
    try:
        template, specials = read_hf_chat_template(folder)
    except TinylmError:
        info["chat"] = "other"
        return None
    if template is None:
        info["chat"] = None
        return None
    if tokenizer is not None and is_tinylm_layout(template, specials, tokenizer):
        info["chat"] = "tinylm"
        return template_record()
    info["chat"] = "other"
    return None
