"""Every source of randomness a run draws from, saved and restored for an exact resume.

A run continues bit for bit when, besides weights and optimizer state, every
RNG is restored: the global torch RNG (dropout), the CUDA RNGs, numpy's and
python's global RNGs, and the named ``torch.Generator``s (the one that draws
batches: its state *is* the data position, see ``tinylm.data.batches``).

They go into rng.safetensors: the states as integer tensors, and the few scalars
of numpy's and python's states as JSON in the file's metadata. Restoring checks
every part against a live state of the same kind first, so a damaged file is
one line and never a half-restored RNG.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tinylm.checkpoint.hints import corrupt_hint
from tinylm.checkpoint.tensor_files import load_tensors, write_safetensors
from tinylm.errors import TinylmError
from tinylm.run_layout import RNG_FILE
from tinylm.untrusted_files import metadata_json

# -- saving ---------------------------------------------------------------------------------


def capture_rng(generators: dict[str, torch.Generator] | None) -> tuple[dict, dict]:
    """Every RNG state as int tensors plus the scalars as JSON strings (safetensors metadata)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    tensors = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "python": torch.tensor(py_state, dtype=torch.int64),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    for name, generator in (generators or {}).items():
        tensors[f"generator.{name}"] = generator.get_state()
    metadata = {
        "numpy": json.dumps([np_name, int(np_pos), int(np_has_gauss), float(np_gauss)]),
        "python": json.dumps([py_version, py_gauss]),
    }
    return tensors, metadata


def save_rng_states(folder: Path, generators: dict[str, torch.Generator] | None) -> None:
    """rng.safetensors in ``folder``: the global RNGs and the named ``generators``."""
    tensors, metadata = capture_rng(generators)
    write_safetensors(tensors, folder / RNG_FILE, metadata)


# -- restoring ------------------------------------------------------------------------------


def restore_rng_states(
    folder: Path, generators: dict[str, torch.Generator] | None, *, global_rngs: bool
) -> None:
    """Restore the named ``generators`` in place, and the global RNGs when ``global_rngs``."""
    tensors, metadata = load_tensors(folder / RNG_FILE)
    restore_generators(folder, tensors, generators or {})
    if global_rngs:
        restore_global_rng(folder / RNG_FILE, tensors, metadata)


def rng_state(path: Path, tensors: dict[str, Tensor], name: str, like: Tensor) -> Tensor:
    """The saved state ``name``, checked to have the dtype and size of a live one (``like``)."""
    state = tensors.get(name)
    if state is None or state.dtype != like.dtype or state.shape != like.shape:
        found = "missing" if state is None else f"{state.dtype} {list(state.shape)}"
        raise TinylmError(
            f"{path}: RNG state {name!r} is {found}, expected {like.dtype} {list(like.shape)}; "
            f"the file is corrupt, {corrupt_hint(path.parent)}"
        )
    return state


def restore_global_rng(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Set torch's, numpy's and python's global RNGs; every saved part is checked first."""
    hint = f"the file is corrupt; {corrupt_hint(path.parent)}"
    torch_state = rng_state(path, tensors, "torch", torch.get_rng_state())
    np_now = np.random.get_state()
    np_keys = rng_state(path, tensors, "numpy", torch.from_numpy(np.asarray(np_now[1], np.int64)))
    py_now = random.getstate()
    py_state = rng_state(path, tensors, "python", torch.tensor(py_now[1], dtype=torch.int64))
    numpy_meta = metadata_json(metadata, "numpy", str(path), hint)
    python_meta = metadata_json(metadata, "python", str(path), hint)
    if not (
        isinstance(numpy_meta, list)
        and len(numpy_meta) == 4
        and numpy_meta[0] == np_now[0]
        and all(isinstance(v, int) and not isinstance(v, bool) for v in numpy_meta[1:3])
        and isinstance(numpy_meta[3], (int, float))
    ):
        raise TinylmError(f"{path}: metadata 'numpy' is not a numpy RNG state; {hint}")
    if not (
        isinstance(python_meta, list)
        and len(python_meta) == 2
        and python_meta[0] == py_now[0]
        and (python_meta[1] is None or isinstance(python_meta[1], float))
    ):
        raise TinylmError(f"{path}: metadata 'python' is not a python RNG state; {hint}")
    _, np_pos, np_has_gauss, np_gauss = numpy_meta
    try:
        np_key_array = np_keys.numpy().astype(np.uint32)
        np.random.set_state((np_now[0], np_key_array, np_pos, np_has_gauss, float(np_gauss)))
        random.setstate((python_meta[0], tuple(py_state.tolist()), python_meta[1]))
        torch.set_rng_state(torch_state)
    except (ValueError, TypeError, OverflowError, RuntimeError) as exc:
        raise TinylmError(f"{path} holds an invalid RNG state ({exc}); {hint}") from None
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            if f"cuda.{index}" in tensors:
                like = torch.cuda.get_rng_state(index)
                torch.cuda.set_rng_state(rng_state(path, tensors, f"cuda.{index}", like), index)


def restore_generators(
    folder: Path, tensors: dict[str, Tensor], generators: dict[str, torch.Generator]
) -> None:
    """Set each named generator to its saved state; a name not saved is a one-line error."""
    for name, generator in generators.items():
        state = tensors.get(f"generator.{name}")
        if state is None:
            saved = sorted(k.removeprefix("generator.") for k in tensors if k.startswith("gen"))
            raise TinylmError(
                f"checkpoint {folder} holds no state for generator {name!r} "
                f"(it has: {', '.join(saved) or 'none'}); pass the names used when saving"
            )
        generator.set_state(
            rng_state(folder / RNG_FILE, tensors, f"generator.{name}", generator.get_state())
        )
