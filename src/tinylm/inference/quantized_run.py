"""A quantised checkpoint: a trained run's weight matrices stored as int8 or bfloat16.

``tinylm quantize`` (:func:`save_quantized`) writes a checkpoint folder like any
other (``model.safetensors``, ``config.json``, ``tokenizer.json``, ``state.json``;
no optimizer or RNG states: it is for reading, not for training), except that:

* ``state.json`` names the format: ``"weights": "int8"`` (or ``"bfloat16"``). A
  checkpoint without the field is float32, as every trained one is.
* In ``model.safetensors`` each weight matrix the decode engine packs (every
  ``nn.Linear``'s weight and the token table: see :func:`packed_names`) is stored in
  that format under its usual name. For int8 the row scales lie beside it, float32,
  under the name plus ``.scale``: ``blocks.0.attn.w_q.weight`` is an ``I8`` tensor
  ``(out, in)`` and ``blocks.0.attn.w_q.weight.scale`` an ``F32`` vector ``(out,)``,
  with ``weight ~= q * scale[:, None]`` (``tinylm.inference.weight_formats``
  writes out the rounding). Norm gains, biases and position tables stay float32.
  A tied output head is stored once, as in any checkpoint, its scale aliased too.

Reading one (:func:`load_quantized`): the header is checked against the model the
config describes before anything is allocated (names, dtypes, shapes), the
scales must be finite and positive, and any mismatch is one line. The loader
then *dequantises into a float32 GPT*, so everything that runs the model
(``tinylm eval``, ``inspect``, ``export``) works unchanged, and the int8 pairs are
handed to the :class:`~tinylm.inference.engine.DecodeEngine`, which decodes with
them as stored (``tinylm sample``). Training from such a checkpoint is refused
(``tinylm.checkpoint.save_load.refuse_quantized``): it would start from rounded
weights without saying so; train from the float run instead.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor, nn

from tinylm.checkpoint.hints import corrupt_hint
from tinylm.checkpoint.json_files import write_json
from tinylm.checkpoint.meta import STORED_WEIGHTS, CheckpointMeta, state_record
from tinylm.checkpoint.tensor_files import (
    dedupe,
    load_tensors,
    stored_shapes,
    write_safetensors,
)
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_directory
from tinylm.inference.weight_formats import dequantize_int8, quantize_int8
from tinylm.model import GPT
from tinylm.run_layout import (
    CHAT_TEMPLATE_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    STATE_FILE,
)
from tinylm.untrusted_files import FLOAT_DTYPES

#: The formats ``tinylm quantize`` writes (float32 is the trained run itself).
QUANTIZED_FORMATS = tuple(f for f in STORED_WEIGHTS if f != "float32")

#: What an int8 matrix's row scales are called: its own name plus this.
SCALE_SUFFIX = ".scale"

#: The safetensors dtype each format stores its matrices in.
_STORED_DTYPE = {"int8": "I8", "bfloat16": "BF16"}

Int8Weights = dict[str, tuple[Tensor, Tensor]]


def packed_names(model: nn.Module) -> list[str]:
    """The state-dict names of the matrices a quantised run stores in its format.

    Every ``nn.Linear``'s weight (attention and feed-forward projections, the
    output head) and the token table: the matrices the decode engine packs, and
    the bulk of the bytes. A tied head appears under both of its names.
    """
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return [*(f"{name}.weight" for name in linear), "tok_emb.weight"]


# -- writing ------------------------------------------------------------------------------


def quantized_tensors(model: GPT, to: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors a quantised ``model.safetensors`` holds, and ``{alias: stored name}``."""
    if to not in QUANTIZED_FORMATS:
        raise TinylmError(
            f"cannot quantise to {to!r}; choose one of {', '.join(QUANTIZED_FORMATS)}"
        )
    unique, aliases = dedupe(model.state_dict())
    packed = set(packed_names(model))
    out: dict[str, Tensor] = {}
    for name, tensor in unique.items():
        if name not in packed:
            out[name] = tensor.float().contiguous()
        elif to == "bfloat16":
            out[name] = tensor.to(torch.bfloat16).contiguous()
        else:
            out[name], out[name + SCALE_SUFFIX] = quantize_int8(tensor)
    if to == "int8":  # a tied head's scales are the table's, like its rows
        aliases = {
            **aliases,
            **{a + SCALE_SUFFIX: n + SCALE_SUFFIX for a, n in aliases.items() if n in packed},
        }
    return out, aliases


def save_quantized(model: GPT, meta: CheckpointMeta, out: str | os.PathLike, to: str) -> Path:
    """Write ``model`` (loaded from the checkpoint ``meta`` describes) quantised to ``out``.

    The folder is a checkpoint (written atomically, like any other) holding the
    weights in format ``to``, the source's config, tokenizer and chat template, and a
    state.json with the source's step and metrics and ``"weights": to``.
    """
    if meta.weights != "float32":
        raise TinylmError(
            f"checkpoint {meta.path} already holds {meta.weights} weights; quantise the float "
            "run it was made from (rounding twice loses more)"
        )
    tensors, aliases = quantized_tensors(model, to)
    out = Path(out)
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    with atomic_directory(out, STATE_FILE, "tinylm checkpoint", size=size) as tmp:
        metadata = {"format": "pt", "aliases": json.dumps(aliases)}
        write_safetensors(tensors, tmp / MODEL_FILE, metadata)
        shutil.copyfile(meta.path / CONFIG_FILE, tmp / CONFIG_FILE)
        if meta.tokenizer_file is not None:
            shutil.copyfile(meta.tokenizer_file, tmp / meta.tokenizer_file.name)
        if meta.chat_template_file is not None:
            shutil.copyfile(meta.chat_template_file, tmp / CHAT_TEMPLATE_FILE)
        record = state_record(meta.step, meta.metrics, {}, None, weights=to)
        write_json(tmp / STATE_FILE, record)
    return out


# -- reading ------------------------------------------------------------------------------


def check_quantized_fits(folder: Path, model: nn.Module, weights: str) -> None:
    """Refuse a quantised checkpoint whose header does not fit ``model`` (may be on ``meta``).

    Every name of the model's state dict must be stored, with its shape; the packed
    matrices in ``weights``'s dtype, the rest floating; an int8 matrix's ``.scale``
    an ``F32`` vector of one number per row; nothing else.
    """
    stored = stored_shapes(folder / MODEL_FILE)
    hint = f"the file was made by another program or edited, {corrupt_hint(folder)}"
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    packed = set(packed_names(model)) & set(expected)
    wanted: dict[str, tuple[set[str] | frozenset[str], tuple[int, ...]]] = {}
    for name, shape in expected.items():
        if name in packed:
            wanted[name] = ({_STORED_DTYPE[weights]}, shape)
            if weights == "int8":
                wanted[name + SCALE_SUFFIX] = ({"F32"}, shape[:1])
        else:
            wanted[name] = (FLOAT_DTYPES, shape)
    where = f"{weights} checkpoint {folder}"
    missing = sorted(set(wanted) - set(stored))
    unexpected = sorted(set(stored) - set(wanted))
    if missing or unexpected:
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise TinylmError(f"{where} does not fit its {CONFIG_FILE} ({detail}); {hint}")
    for name, (dtypes, shape) in wanted.items():
        dtype, found = stored[name]
        if found != shape:
            raise TinylmError(
                f"{where} does not fit its {CONFIG_FILE} ({name} is {list(found)}, "
                f"expected {list(shape)}); {hint}"
            )
        if dtype not in dtypes:
            raise TinylmError(
                f"{where} stores {name} as {dtype}, expected {' or '.join(sorted(dtypes))}; {hint}"
            )


def load_quantized(folder: Path, model: GPT, weights: str) -> Int8Weights:
    """Load a quantised checkpoint into ``model``, dequantised; return its int8 pairs.

    ``model`` is built from the checkpoint's config and already checked with
    :func:`check_quantized_fits`. The int8 pairs (``{name: (q, scale)}``, empty
    for bfloat16) are what a ``DecodeEngine`` decodes with at ``weights="int8"``.
    """
    tensors, _ = load_tensors(folder / MODEL_FILE)
    pairs: Int8Weights = {}
    state: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith(SCALE_SUFFIX) and weights == "int8":
            continue
        if weights == "int8" and tensor.dtype == torch.int8:
            scale = tensors[name + SCALE_SUFFIX]
            if not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
                raise TinylmError(
                    f"int8 checkpoint {folder} has a scale in {name}{SCALE_SUFFIX} that is not "
                    f"a finite positive number; {corrupt_hint(folder)}"
                )
            if bool((tensor == -128).any()):  # the grid is symmetric: -127 .. 127
                raise TinylmError(
                    f"int8 checkpoint {folder} has -128 in {name}, outside the symmetric grid "
                    f"-127..127 tinylm writes; {corrupt_hint(folder)}"
                )
            pairs[name] = (tensor, scale)
            state[name] = dequantize_int8(tensor, scale)
        else:
            state[name] = tensor.float()
    model.load_state_dict(state, strict=True)
    return pairs
