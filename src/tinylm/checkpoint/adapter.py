"""A LoRA adapter saved alone: its tensors, its settings, and which base it belongs to.

An adapter folder holds two files (names in :mod:`tinylm.run_layout`)::

    adapter.safetensors   every adapter's A and B (``blocks.0.attn.w_q.lora_a``, ...)
    adapter.json          format, version, the LoRA settings, the step, and the base

An adapter means nothing without the exact weights it was trained on, so
``adapter.json`` records the base checkpoint's path, step, and the size and
SHA-256 of its ``model.safetensors``. Loading onto another base is refused in one
line, before anything is applied: a different base would give plausible-looking
but wrong outputs, never an error.

Both files are untrusted (:mod:`tinylm.untrusted_files`): every JSON field is
checked, and the tensors' names, shapes and dtypes are compared with the
adapters the settings build before a byte of them is read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from tinylm import __version__
from tinylm.checkpoint.json_files import write_json
from tinylm.checkpoint.meta import read_state
from tinylm.checkpoint.save_load import resolve_checkpoint
from tinylm.checkpoint.tensor_files import write_safetensors
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_directory
from tinylm.model.lora import LoraConfig, has_lora, load_lora_state_dict, lora_state_dict
from tinylm.run_layout import ADAPTER_FILE, ADAPTER_JSON, MODEL_FILE
from tinylm.untrusted_files import (
    FLOAT_DTYPES,
    Record,
    check_format,
    read_json,
    safetensors_header,
)

FORMAT_NAME = "tinylm-lora-adapter"
FORMAT_VERSION = 1
#: What to do about a damaged adapter folder.
DAMAGED = "the adapter is damaged or was edited; save it again from its run"


@dataclass(frozen=True)
class BaseIdentity:
    """Which weights an adapter was trained on: where they were, and what they were."""

    path: Path  # the base checkpoint folder when the adapter was saved
    step: int
    model_bytes: int  # size of its model.safetensors
    model_sha256: str  # and its SHA-256: the identity that counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "step": self.step,
            "model_bytes": self.model_bytes,
            "model_sha256": self.model_sha256,
        }


@dataclass(frozen=True)
class AdapterMeta:
    """What ``adapter.json`` says, every field checked (:func:`read_adapter_meta`)."""

    path: Path  # the adapter folder
    lora: LoraConfig
    base: BaseIdentity
    step: int | None  # the fine-tuning step it was saved at, if a trainer said


def base_identity(checkpoint: str | os.PathLike) -> BaseIdentity:
    """The identity of a checkpoint (or a run folder's latest) as an adapter records it."""
    folder = resolve_checkpoint(checkpoint)
    weights = folder / MODEL_FILE
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return BaseIdentity(
        path=folder.resolve(),
        step=int(read_state(folder)["step"]),
        model_bytes=weights.stat().st_size,
        model_sha256=digest.hexdigest(),
    )


# -- save -------------------------------------------------------------------------------------


def save_adapter(
    folder: str | os.PathLike,
    model: nn.Module,
    lora: LoraConfig,
    base: str | os.PathLike | BaseIdentity,
    *,
    step: int | None = None,
) -> Path:
    """Write ``model``'s adapters to ``folder`` (atomically), tied to checkpoint ``base``.

    ``base`` is the checkpoint the model was loaded from (or its :class:`BaseIdentity`,
    computed once by a trainer that saves often). ``step`` is the fine-tuning step.
    """
    identity = base if isinstance(base, BaseIdentity) else base_identity(base)
    folder = Path(folder)
    with atomic_directory(folder, ADAPTER_JSON, "tinylm adapter") as tmp:
        write_adapter_files(tmp, model, lora, identity, step=step)
    return folder


def write_adapter_files(
    folder: Path, model: nn.Module, lora: LoraConfig, base: BaseIdentity, *, step: int | None
) -> None:
    """The two adapter files, into ``folder`` as it is (a folder being built atomically).

    A LoRA run's checkpoint folder holds them beside its merged weights, so the
    checkpoint is an adapter folder too.
    """
    if not has_lora(model):
        raise TinylmError("this model has no LoRA adapters to save; add_lora it first")
    write_safetensors(
        {name: t.contiguous().cpu() for name, t in lora_state_dict(model).items()},
        folder / ADAPTER_FILE,
        {"format": "pt"},
    )
    record = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created_by": f"tinylm {__version__}",
        "lora": lora.to_dict(),
        "step": step,
        "base": base.to_dict(),
    }
    write_json(folder / ADAPTER_JSON, record)


# -- read -------------------------------------------------------------------------------------


def read_adapter_meta(folder: str | os.PathLike) -> AdapterMeta:
    """``adapter.json`` of the adapter ``folder``, checked field by field."""
    folder = Path(folder)
    path = folder / ADAPTER_JSON
    data = read_json(
        path,
        DAMAGED,
        missing=f"{folder} is not a tinylm adapter (no {ADAPTER_JSON}); "
        "point at a folder save_adapter wrote",
    )
    check_format(data, FORMAT_NAME, FORMAT_VERSION, path, "tinylm adapter", DAMAGED)
    record = Record(data, str(path), DAMAGED)
    try:
        lora = LoraConfig.from_dict(record.dict("lora"))
    except TinylmError as exc:
        raise TinylmError(f"{path}: {exc}; {DAMAGED}") from None
    base = record.record("base")
    sha = base.str("model_sha256")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise base.error("model_sha256", "64 hexadecimal digits", sha)
    identity = BaseIdentity(
        path=Path(base.str("path")),
        step=base.int("step", minimum=0),
        model_bytes=base.int("model_bytes", minimum=0),
        model_sha256=sha,
    )
    step = record.int("step", minimum=0) if record.data.get("step") is not None else None
    return AdapterMeta(path=folder, lora=lora, base=identity, step=step)


def check_base(meta: AdapterMeta, base: str | os.PathLike) -> None:
    """Refuse a base checkpoint whose weights are not the ones the adapter was trained on."""
    found = base_identity(base)
    if (found.model_bytes, found.model_sha256) != (meta.base.model_bytes, meta.base.model_sha256):
        raise TinylmError(
            f"adapter {meta.path} was trained on {meta.base.path} (step {meta.base.step}), "
            f"and {found.path} (step {found.step}) holds other weights; point at the base "
            "it was trained on"
        )


def load_adapter_tensors(meta: AdapterMeta, model: nn.Module) -> None:
    """Copy the adapter's tensors into ``model`` (already ``add_lora``-ed with ``meta.lora``).

    The header is checked against the model's adapters before any tensor is read;
    the values must be finite.
    """
    path = meta.path / ADAPTER_FILE
    infos, _ = safetensors_header(path, DAMAGED)
    expected = lora_state_dict(model)
    odd = sorted(set(infos) ^ set(expected))
    if odd:
        where = "lacks" if odd[0] in expected else "has an unexpected"
        raise TinylmError(f"{path} {where} tensor {odd[0]!r}; {DAMAGED}")
    for name, info in infos.items():
        if info.dtype not in FLOAT_DTYPES:
            raise TinylmError(f"{path}: tensor {name!r} is {info.dtype}, not weights; {DAMAGED}")
        if info.shape != tuple(expected[name].shape):
            raise TinylmError(
                f"{path}: tensor {name!r} is {list(info.shape)}, its settings make "
                f"{list(expected[name].shape)}; {DAMAGED}"
            )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {name: handle.get_tensor(name) for name in infos}
    except (SafetensorError, OSError) as exc:
        raise TinylmError(f"{path} is unreadable ({exc}); {DAMAGED}") from None
    for name, tensor in tensors.items():
        if not bool(torch.isfinite(tensor).all()):
            raise TinylmError(f"{path}: tensor {name!r} holds NaN or infinite values; {DAMAGED}")
    load_lora_state_dict(model, tensors)
