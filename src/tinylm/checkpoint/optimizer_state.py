"""An optimizer's ``state_dict()`` as JSON plus tensors, so it round-trips without pickle.

``optimizer.state_dict()`` holds tensors, numbers, strings, and containers JSON
lacks: tuples (Adam's ``betas``) and dicts with integer keys (parameter ids). It
is encoded as JSON with three tags:

* ``{"__tensor__": name}``: a tensor, stored under ``name`` in optimizer.safetensors;
* ``{"__tuple__": [...]}``: a tuple, so it comes back a tuple and not a list;
* ``{"__dict__": [[key, value], ...]}``: a dict whose keys are not all strings
  (or collide with a tag).

so ``optimizer.state_dict()`` round-trips exactly, ints, floats and tuples
included, for any ``torch.optim.Optimizer``. Anything else is refused when
saving rather than pickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tinylm.checkpoint.hints import POINT_AT_CHECKPOINT, corrupt_hint
from tinylm.checkpoint.json_files import read_checkpoint_json, write_json
from tinylm.checkpoint.tensor_files import load_tensors, save_tensors
from tinylm.errors import TinylmError
from tinylm.run_layout import OPTIMIZER_FILE, OPTIMIZER_JSON
from tinylm.untrusted_files import Record

TAGS = ("__tensor__", "__tuple__", "__dict__")

# -- the codec --------------------------------------------------------------------------------


def encode(value: Any, tensors: dict[str, Tensor], where: str) -> Any:
    """JSON-ready form of a state-dict value; tensors go to ``tensors`` by path name."""
    if isinstance(value, Tensor):
        name = where if where not in tensors else f"{where}#{len(tensors)}"
        tensors[name] = value
        return {"__tensor__": name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, tensors, f"{where}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, tensors, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and k not in TAGS for k in value):
            return {k: encode(v, tensors, f"{where}.{k}") for k, v in value.items()}
        return {
            "__dict__": [
                [encode(k, tensors, f"{where}.key{i}"), encode(v, tensors, f"{where}.{k}")]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    raise TinylmError(
        f"cannot save optimizer state {where} of type {type(value).__name__} without pickle; "
        "keep optimizer state to tensors, numbers, strings, lists, tuples and dicts"
    )


def decode(value: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`encode`; a malformed tag raises ``ValueError`` naming it."""
    if isinstance(value, list):
        return [decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        name = value["__tensor__"]
        if not isinstance(name, str) or name not in tensors:
            raise ValueError(f"tensor {name!r} is not stored")
        return tensors[name]
    if "__tuple__" in value:
        if not isinstance(value["__tuple__"], list):
            raise ValueError("a __tuple__ tag must hold a list")
        return tuple(decode(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        pairs = value["__dict__"]
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in pairs
        ):
            raise ValueError("a __dict__ tag must hold [key, value] pairs")
        decoded = {}
        for k, v in pairs:
            key = decode(k, tensors)
            if not isinstance(key, (str, int, float, bool, tuple)) and key is not None:
                raise ValueError(f"a dict key cannot be {type(key).__name__}")
            decoded[key] = decode(v, tensors)
        return decoded
    return {k: decode(v, tensors) for k, v in value.items()}


# -- the two files ----------------------------------------------------------------------------


def save_optimizer(folder: Path, optimizer: torch.optim.Optimizer) -> None:
    """optimizer.safetensors (the tensors) and optimizer.json (the rest) into ``folder``."""
    tensors: dict[str, Tensor] = {}
    structure = encode(optimizer.state_dict(), tensors, "optimizer")
    save_tensors(folder / OPTIMIZER_FILE, tensors, {"format": "pt"})
    write_json(folder / OPTIMIZER_JSON, {"optimizer": type(optimizer).__name__, "state": structure})


def load_optimizer(folder: Path, optimizer: torch.optim.Optimizer) -> None:
    """Load the saved state into ``optimizer``; a damaged or foreign state is one line."""
    if not (folder / OPTIMIZER_JSON).is_file():
        raise TinylmError(
            f"checkpoint {folder} has no optimizer state (saved for inference only); "
            "resume from a training checkpoint or start a new run"
        )
    tensors, _ = load_tensors(folder / OPTIMIZER_FILE)
    saved = Record(
        read_checkpoint_json(folder / OPTIMIZER_JSON),
        str(folder / OPTIMIZER_JSON),
        POINT_AT_CHECKPOINT,
    )
    name = saved.str("optimizer", "unknown")
    state = saved.dict("state")
    try:
        decoded = decode(state, tensors)
    except (ValueError, TypeError, RecursionError) as exc:
        raise TinylmError(
            f"{folder / OPTIMIZER_JSON} is corrupt ({exc}); {corrupt_hint(folder)}"
        ) from None
    try:
        optimizer.load_state_dict(decoded)
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, TinylmError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise TinylmError(
            f"optimizer state in {folder} does not fit this optimizer ({name} saved; {first}); "
            "resume with the run's own settings"
        ) from None
