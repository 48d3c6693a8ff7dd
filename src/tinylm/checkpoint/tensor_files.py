"""safetensors files for state dicts that share memory: tied tensors stored once.

safetensors refuses tensors that share memory, and a tied weight (the output
projection reusing the embedding) appears twice in a state dict as the very same
view. It is stored once, and the second name is recorded as an alias in the
file's metadata (``{"aliases": {alias: stored name}}``); loading puts it back.
Views that merely overlap are copied, which loses nothing on load.

Reading checks the header first (names, dtypes, shapes, aliases), so a truncated
or edited file is one line naming it, never a traceback or garbage weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from tinylm.checkpoint.hints import POINT_AT_CHECKPOINT, corrupt_hint
from tinylm.errors import TinylmError
from tinylm.untrusted_files import metadata_json, safetensors_header

# -- writing ----------------------------------------------------------------------------------


def dedupe(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Unique tensors (on CPU, contiguous) and ``{alias: saved name}`` for tied ones."""
    unique: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    storages: dict[tuple, int] = {}
    for name, tensor in tensors.items():
        if not isinstance(tensor, Tensor):
            raise TinylmError(f"state entry {name!r} is a {type(tensor).__name__}, not a tensor")
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        view = (
            *storage,
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.stride(),
            tensor.dtype,
        )
        if view in seen:
            aliases[name] = seen[view]
            continue
        seen[view] = name
        unique[name] = tensor
        storages[storage] = storages.get(storage, 0) + 1
    out = {}
    for name, tensor in unique.items():
        shared = storages[(tensor.device, tensor.untyped_storage().data_ptr())] > 1
        tensor = tensor.detach().to("cpu")
        out[name] = tensor.clone() if shared else tensor.contiguous()
    return out, aliases


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """A state dict to ``path``, tied tensors once and their aliases in the metadata."""
    unique, aliases = dedupe(tensors)
    write_safetensors(unique, path, {**metadata, "aliases": json.dumps(aliases)})


def write_safetensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Serialise to safetensors bytes, then write them with a plain ``open()``.

    Writing ourselves (rather than ``safetensors.torch.save_file``) gives the file
    the permissions any other file gets (safetensors makes them 0600) and turns a
    full disk into an ``OSError`` with its errno, which ``atomic_directory``
    reports in one line, instead of a ``SafetensorError`` traceback.
    """
    data = safetensors_bytes(tensors, metadata=metadata)
    with open(path, "wb") as handle:
        handle.write(data)


# -- reading ----------------------------------------------------------------------------------


def read_header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The checked header of a checkpoint's safetensors file (nothing loaded)."""
    if not path.is_file():
        raise TinylmError(
            f"{path.parent} is not a tinylm checkpoint (missing {path.name}); {POINT_AT_CHECKPOINT}"
        )
    hint = f"the file is truncated or corrupt; {corrupt_hint(path.parent)}"
    return safetensors_header(path, hint)


def read_aliases(path: Path, names: set[str], metadata: dict[str, str]) -> dict[str, str]:
    """``{alias: stored name}`` from the metadata, every alias new and every target stored."""
    hint = f"the file is corrupt; {corrupt_hint(path.parent)}"
    aliases = metadata_json(metadata, "aliases", str(path), hint, default={})
    if not isinstance(aliases, dict) or not all(
        isinstance(alias, str) and isinstance(name, str) and name in names and alias not in names
        for alias, name in aliases.items()
    ):
        raise TinylmError(
            f"{path}: metadata 'aliases' must map new names to stored tensors; {hint}"
        )
    return aliases


def load_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors of a safetensors file (aliases re-attached) and its metadata."""
    infos, metadata = read_header(path)
    aliases = read_aliases(path, set(infos), metadata)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise TinylmError(
            f"{path} is truncated or corrupt ({exc}); {corrupt_hint(path.parent)}"
        ) from None
    for alias, name in aliases.items():
        tensors[alias] = tensors[name]
    return tensors, metadata


def stored_shapes(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (safetensors dtype, shape)}`` of a file's tensors, aliases included.

    Read from the header alone, so nothing is allocated however large the file says
    its tensors are.
    """
    infos, metadata = read_header(path)
    shapes = {name: (info.dtype, info.shape) for name, info in infos.items()}
    for alias, name in read_aliases(path, set(infos), metadata).items():
        shapes[alias] = shapes[name]
    return shapes
