"""Checkpoints: a directory of safetensors and JSON, written atomically, no pickle.

A checkpoint directory holds::

    model.safetensors      the weights; tied tensors stored once, aliases in its metadata
    optimizer.safetensors  every tensor of ``optimizer.state_dict()``
    optimizer.json         the rest of it (hyperparameters, step counts, structure)
    config.json            {"model": model config, "train": train config}
    tokenizer.json         the tokenizer, so sampling needs nothing but the directory
    rng.safetensors        torch CPU/CUDA, numpy and python RNG states, named generators
    state.json             format, version, step, metrics, and the trainer's ``extra``

Nothing is pickled, so loading a checkpoint someone sent you cannot run code.
The optimizer state is encoded as JSON with three tags that JSON lacks —
``{"__tensor__": name}`` (stored in optimizer.safetensors), ``{"__tuple__": [...]}``
and ``{"__dict__": [[key, value], ...]}`` for non-string keys — so
``optimizer.state_dict()`` round-trips exactly, ints, floats and tuples included,
for any ``torch.optim.Optimizer``.

**Exact resume.** A run continues bit for bit when, besides weights and optimizer
state, every source of randomness is restored: the global torch RNG (dropout),
CUDA RNGs, numpy's and python's global RNGs, and the ``torch.Generator`` that
draws batches (its state *is* the data position, see ``tinylm.data.batches``).

**Atomicity.** The directory is built under a temporary name beside the target,
every file fsynced, then renamed into place; an existing checkpoint of the same
name is renamed aside first and deleted only after the new one is in place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from tinylm.check_values import is_number
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_directory, recover_interrupted
from tinylm.tokenizers.base import Tokenizer
from tinylm.untrusted_files import (
    FLOAT_DTYPES,
    Record,
    check_format,
    metadata_json,
    read_json,
    safetensors_header,
)

FORMAT_NAME = "tinylm-checkpoint"
FORMAT_VERSION = 1

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
RNG_FILE = "rng.safetensors"
STATE_FILE = "state.json"

_HINT = "point at a run's checkpoint directory"
_CKPT_NAME = re.compile(r"^ckpt-(\d+)$")


# -- tensors without shared storage ----------------------------------------------------


def _dedupe(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Unique tensors (on CPU, contiguous) and ``{alias: saved name}`` for tied ones.

    safetensors refuses tensors that share memory. A tied weight (the output
    projection reusing the embedding) appears twice in a state dict as the very
    same view; it is stored once and the second name is recorded as an alias.
    Views that merely overlap are copied, which loses nothing on load.
    """
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


def _save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    unique, aliases = _dedupe(tensors)
    _save_file(unique, path, {**metadata, "aliases": json.dumps(aliases)})


def _save_file(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Serialise to safetensors bytes, then write them with a plain ``open()``.

    Writing ourselves (rather than ``safetensors.torch.save_file``) gives the file
    the permissions any other file gets (safetensors makes them 0600) and turns a
    full disk into an ``OSError`` with its errno, which ``atomic_directory``
    reports in one line, instead of a ``SafetensorError`` traceback.
    """
    data = safetensors_bytes(tensors, metadata=metadata)
    with open(path, "wb") as handle:
        handle.write(data)


def _corrupt_hint(folder: Path) -> str:
    return (
        f"point at an earlier ckpt-* folder of the run, or move {folder.name} out of the run "
        "folder to resume from the one before"
    )


def _read_header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The checked header of a checkpoint's safetensors file (nothing loaded)."""
    if not path.is_file():
        raise TinylmError(
            f"{path.parent} is not a tinylm checkpoint (missing {path.name}); {_HINT}"
        )
    hint = f"the file is truncated or corrupt; {_corrupt_hint(path.parent)}"
    return safetensors_header(path, hint)


def _aliases(path: Path, names: set[str], metadata: dict[str, str]) -> dict[str, str]:
    """``{alias: stored name}`` from the metadata, every alias new and every target stored."""
    hint = f"the file is corrupt; {_corrupt_hint(path.parent)}"
    aliases = metadata_json(metadata, "aliases", str(path), hint, default={})
    if not isinstance(aliases, dict) or not all(
        isinstance(alias, str) and isinstance(name, str) and name in names and alias not in names
        for alias, name in aliases.items()
    ):
        raise TinylmError(
            f"{path}: metadata 'aliases' must map new names to stored tensors; {hint}"
        )
    return aliases


def _load_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors of a safetensors file (aliases re-attached) and its metadata."""
    infos, metadata = _read_header(path)
    aliases = _aliases(path, set(infos), metadata)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise TinylmError(
            f"{path} is truncated or corrupt ({exc}); {_corrupt_hint(path.parent)}"
        ) from None
    for alias, name in aliases.items():
        tensors[alias] = tensors[name]
    return tensors, metadata


def stored_tensors(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (safetensors dtype, shape)}`` of a checkpoint's weights, read from the header.

    Nothing is loaded, so a caller can compare the shapes with a model built on
    the ``meta`` device before allocating one (an edited ``config.json`` asking
    for a vocabulary of 10^12 is refused in milliseconds).
    """
    file = resolve_checkpoint(path) / MODEL_FILE
    infos, metadata = _read_header(file)
    shapes = {name: (info.dtype, info.shape) for name, info in infos.items()}
    for alias, name in _aliases(file, set(infos), metadata).items():
        shapes[alias] = shapes[name]
    return shapes


def check_fits(path: str | os.PathLike, model: nn.Module) -> None:
    """Refuse a checkpoint whose weights' names, shapes or dtypes do not fit ``model``.

    ``model`` may live on the ``meta`` device: only its state dict's shapes and
    dtypes are used. Integer or boolean tensors where the model has floating
    weights are refused rather than cast, which would load garbage silently.
    """
    folder = resolve_checkpoint(path)
    stored = stored_tensors(folder)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        odd = len(missing) + len(unexpected)
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        detail += f" and {odd - 1} more" if odd > 1 else ""
        raise TinylmError(
            f"checkpoint {folder} does not fit this model ({detail}); build the model from "
            f"the checkpoint's {CONFIG_FILE}"
        )
    for name, tensor in expected.items():
        dtype, shape = stored[name]
        if tuple(tensor.shape) != shape:
            raise TinylmError(
                f"checkpoint {folder} does not fit this model ({name} is {list(shape)} there, "
                f"{list(tensor.shape)} here); build the model from the checkpoint's {CONFIG_FILE}"
            )
        if tensor.is_floating_point() and dtype not in FLOAT_DTYPES:
            raise TinylmError(
                f"checkpoint {folder} stores {name} as {dtype}, which cannot hold weights; "
                f"the file was made by another program or edited, {_corrupt_hint(folder)}"
            )


# -- optimizer state as JSON + tensors -------------------------------------------------

_TAGS = ("__tensor__", "__tuple__", "__dict__")


def _encode(value: Any, tensors: dict[str, Tensor], where: str) -> Any:
    """JSON-ready form of a state-dict value; tensors go to ``tensors`` by path name."""
    if isinstance(value, Tensor):
        name = where if where not in tensors else f"{where}#{len(tensors)}"
        tensors[name] = value
        return {"__tensor__": name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{where}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in value):
            return {k: _encode(v, tensors, f"{where}.{k}") for k, v in value.items()}
        return {
            "__dict__": [
                [_encode(k, tensors, f"{where}.key{i}"), _encode(v, tensors, f"{where}.{k}")]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    raise TinylmError(
        f"cannot save optimizer state {where} of type {type(value).__name__} without pickle; "
        "keep optimizer state to tensors, numbers, strings, lists, tuples and dicts"
    )


def _decode(value: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`_encode`; a malformed tag raises ``ValueError`` naming it."""
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
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
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        pairs = value["__dict__"]
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in pairs
        ):
            raise ValueError("a __dict__ tag must hold [key, value] pairs")
        decoded = {}
        for k, v in pairs:
            key = _decode(k, tensors)
            if not isinstance(key, (str, int, float, bool, tuple)) and key is not None:
                raise ValueError(f"a dict key cannot be {type(key).__name__}")
            decoded[key] = _decode(v, tensors)
        return decoded
    return {k: _decode(v, tensors) for k, v in value.items()}


def _save_optimizer(folder: Path, optimizer: torch.optim.Optimizer) -> None:
    tensors: dict[str, Tensor] = {}
    structure = _encode(optimizer.state_dict(), tensors, "optimizer")
    _save_tensors(folder / OPTIMIZER_FILE, tensors, {"format": "pt"})
    _write_json(
        folder / OPTIMIZER_JSON, {"optimizer": type(optimizer).__name__, "state": structure}
    )


def _load_optimizer(folder: Path, optimizer: torch.optim.Optimizer) -> None:
    if not (folder / OPTIMIZER_JSON).is_file():
        raise TinylmError(
            f"checkpoint {folder} has no optimizer state (saved for inference only); "
            "resume from a training checkpoint or start a new run"
        )
    tensors, _ = _load_tensors(folder / OPTIMIZER_FILE)
    saved = Record(_read_json(folder / OPTIMIZER_JSON), str(folder / OPTIMIZER_JSON), _HINT)
    name = saved.str("optimizer", "unknown")
    state = saved.dict("state")
    try:
        decoded = _decode(state, tensors)
    except (ValueError, TypeError, RecursionError) as exc:
        raise TinylmError(
            f"{folder / OPTIMIZER_JSON} is corrupt ({exc}); {_corrupt_hint(folder)}"
        ) from None
    try:
        optimizer.load_state_dict(decoded)
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, TinylmError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise TinylmError(
            f"optimizer state in {folder} does not fit this optimizer ({name} saved; {first}); "
            "resume with the run's own settings"
        ) from None


# -- RNG states ---------------------------------------------------------------------------


def _capture_rng(generators: dict[str, torch.Generator] | None) -> tuple[dict, dict]:
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


def _rng_state(path: Path, tensors: dict[str, Tensor], name: str, like: Tensor) -> Tensor:
    """The saved state ``name``, checked to have the dtype and size of a live one (``like``)."""
    state = tensors.get(name)
    if state is None or state.dtype != like.dtype or state.shape != like.shape:
        found = "missing" if state is None else f"{state.dtype} {list(state.shape)}"
        raise TinylmError(
            f"{path}: RNG state {name!r} is {found}, expected {like.dtype} {list(like.shape)}; "
            f"the file is corrupt, {_corrupt_hint(path.parent)}"
        )
    return state


def _restore_global_rng(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Set torch's, numpy's and python's global RNGs; every saved part is checked first."""
    hint = f"the file is corrupt; {_corrupt_hint(path.parent)}"
    torch_state = _rng_state(path, tensors, "torch", torch.get_rng_state())
    np_now = np.random.get_state()
    np_keys = _rng_state(path, tensors, "numpy", torch.from_numpy(np.asarray(np_now[1], np.int64)))
    py_now = random.getstate()
    py_state = _rng_state(path, tensors, "python", torch.tensor(py_now[1], dtype=torch.int64))
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
                torch.cuda.set_rng_state(_rng_state(path, tensors, f"cuda.{index}", like), index)


def _restore_generators(
    folder: Path, tensors: dict[str, Tensor], generators: dict[str, torch.Generator]
) -> None:
    for name, generator in generators.items():
        state = tensors.get(f"generator.{name}")
        if state is None:
            saved = sorted(k.removeprefix("generator.") for k in tensors if k.startswith("gen"))
            raise TinylmError(
                f"checkpoint {folder} holds no state for generator {name!r} "
                f"(it has: {', '.join(saved) or 'none'}); pass the names used when saving"
            )
        generator.set_state(
            _rng_state(folder / RNG_FILE, tensors, f"generator.{name}", generator.get_state())
        )


# -- small JSON helpers -------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    try:
        text = json.dumps(data, indent=1)
    except (TypeError, ValueError) as exc:
        raise TinylmError(
            f"cannot save {path.name}: {exc}; pass JSON-serialisable values"
        ) from None
    path.write_text(text + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    missing = f"{path.parent} is not a tinylm checkpoint (missing {path.name}); {_HINT}"
    return read_json(path, _corrupt_hint(path.parent), missing=missing)


def _config_dict(config: Any, model: nn.Module) -> dict[str, Any] | None:
    """The model config as a plain dict; taken from ``model.config`` when not given."""
    config = getattr(model, "config", None) if config is None else config
    if config is None or isinstance(config, dict):
        return config
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    raise TinylmError(f"config must be a dict or a dataclass, got {type(config).__name__}")


# -- save / load ---------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    step: int,
    *,
    config: Any = None,
    tokenizer: Tokenizer | str | os.PathLike | None = None,
    extra: dict[str, Any] | None = None,
    generators: dict[str, torch.Generator] | None = None,
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    best: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory at ``path`` atomically; return its path.

    ``optimizer=None`` saves weights only (for sampling). ``config`` defaults to
    ``model.config``. ``tokenizer`` is a Tokenizer or a tokenizer file to copy.
    ``generators`` are named ``torch.Generator``s whose state must resume (the
    batch generator). ``extra`` is the trainer's own JSON-able resume state (data
    position, counters); ``metrics`` (e.g. ``val_loss``) and ``train_config`` are
    JSON too. ``best`` (``{"step", "val_loss"}``) records which step is the run's
    best so far (:class:`CheckpointManager` sets it). The global RNG states are
    always saved.
    """
    path = Path(path)
    size = _tensor_bytes(model.state_dict()) + _tensor_bytes(
        optimizer.state_dict() if optimizer is not None else {}
    )
    with atomic_directory(path, STATE_FILE, "tinylm checkpoint", size=size) as tmp:
        _save_tensors(tmp / MODEL_FILE, model.state_dict(), {"format": "pt"})
        if optimizer is not None:
            _save_optimizer(tmp, optimizer)
        rng_tensors, rng_metadata = _capture_rng(generators)
        _save_file(rng_tensors, tmp / RNG_FILE, rng_metadata)
        _write_json(
            tmp / CONFIG_FILE, {"model": _config_dict(config, model), "train": train_config}
        )
        if isinstance(tokenizer, Tokenizer):
            tokenizer.save(tmp / TOKENIZER_FILE)
        elif tokenizer is not None:
            if not Path(tokenizer).is_file():
                raise TinylmError(f"tokenizer file {tokenizer} does not exist; pass a Tokenizer")
            shutil.copyfile(tokenizer, tmp / TOKENIZER_FILE)
        _write_json(tmp / STATE_FILE, _state_record(step, metrics, extra, best))
    return path


def _tensor_bytes(value: Any, seen: set | None = None) -> int:
    """Bytes of every tensor in a (nested) state dict, tied ones once: the bulk of a
    checkpoint's size, for a full disk's error message."""
    seen = set() if seen is None else seen
    if isinstance(value, Tensor):
        key = (value.device, value.untyped_storage().data_ptr(), value.storage_offset())
        if key in seen:
            return 0
        seen.add(key)
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v, seen) for v in value)
    return 0


def _state_record(
    step: int, metrics: dict | None, extra: dict | None, best: dict | None
) -> dict[str, Any]:
    from tinylm import __version__

    record = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created_by": f"tinylm {__version__}",
        "step": int(step),
        "metrics": {name: float(value) for name, value in (metrics or {}).items()},
        "extra": extra or {},
    }
    if best is not None:
        record["best"] = {"step": int(best["step"]), "val_loss": float(best["val_loss"])}
    return record


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory ``path`` means: itself, or a run directory's latest one."""
    path = Path(path)
    if not path.exists():
        aside = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
        note = f" (an interrupted save left its predecessor at {aside[-1]})" if aside else ""
        raise TinylmError(f"checkpoint {path} does not exist{note}; {_HINT}")
    if path.is_dir() and not (path / MODEL_FILE).exists():
        latest = CheckpointManager(path).latest()
        if latest is not None:
            return latest
    if not path.is_dir() or not (path / MODEL_FILE).is_file():
        raise TinylmError(f"{path} is not a tinylm checkpoint (missing {MODEL_FILE}); {_HINT}")
    return path


def _read_state(folder: Path) -> dict[str, Any]:
    """state.json, every field checked: a hand-edited or damaged file is one line."""
    state = _read_json(folder / STATE_FILE)
    what = f"tinylm checkpoint ({STATE_FILE} is foreign or from another version)"
    check_format(state, FORMAT_NAME, FORMAT_VERSION, folder, what, _HINT)
    record = Record(state, str(folder / STATE_FILE), _corrupt_hint(folder))
    checked = {
        **state,
        "step": record.int("step", minimum=0),
        "metrics": _metrics(record),
        "extra": record.dict("extra", {}),
    }
    if record.has("best"):
        best = record.record("best")
        checked["best"] = {
            "step": best.int("step", minimum=0),
            "val_loss": best.float("val_loss"),
        }
    return checked


def _metrics(record: Record) -> dict[str, float]:
    """Metrics are numbers; NaN is allowed (a diverged evaluation is recorded as such)."""
    metrics = record.dict("metrics", {})
    for name, value in metrics.items():
        if not is_number(value, finite=False):
            raise record.error(f"metrics.{name}", "a number", value)
    return {name: float(value) for name, value in metrics.items()}


def _read_config(folder: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(model config, train config)`` from config.json; either may be null."""
    record = Record(_read_json(folder / CONFIG_FILE), str(folder / CONFIG_FILE), _HINT)
    return record.dict("model", None, nullable=True), record.dict("train", None, nullable=True)


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint says about itself, without loading tensors.

    Keys: ``path`` (the resolved directory), ``step``, ``config`` (model config
    dict, for ``ModelConfig.from_dict``), ``train_config``, ``metrics``,
    ``extra``, ``state`` (all of state.json) and ``tokenizer`` (path of
    tokenizer.json, or ``None`` when the checkpoint has none).
    """
    folder = resolve_checkpoint(path)
    state = _read_state(folder)
    model_config, train_config = _read_config(folder)
    tokenizer = folder / TOKENIZER_FILE
    return {
        "path": folder,
        "step": state["step"],
        "config": model_config,
        "train_config": train_config,
        "metrics": state["metrics"],
        "extra": state["extra"],
        "state": state,
        "tokenizer": tokenizer if tokenizer.is_file() else None,
    }


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    generators: dict[str, torch.Generator] | None = None,
    restore_rng: bool | None = None,
) -> int:
    """Restore weights (and optimizer, generators, RNGs) from a checkpoint; return its step.

    ``generators`` are restored in place by name. The global RNGs (torch, CUDA,
    numpy, python) are restored when ``restore_rng`` is true; by default they
    are exactly when an optimizer is given, i.e. when resuming training, and
    left alone when merely loading weights to sample or evaluate.
    """
    folder = resolve_checkpoint(path)
    state = _read_state(folder)
    check_fits(folder, model)
    _load_model(folder, model)
    if optimizer is not None:
        _load_optimizer(folder, optimizer)
    if restore_rng is None:
        restore_rng = optimizer is not None
    if generators or restore_rng:
        rng_tensors, rng_metadata = _load_tensors(folder / RNG_FILE)
        _restore_generators(folder, rng_tensors, generators or {})
        if restore_rng:
            _restore_global_rng(folder / RNG_FILE, rng_tensors, rng_metadata)
    return int(state["step"])


def _load_model(folder: Path, model: nn.Module) -> None:
    tensors, _ = _load_tensors(folder / MODEL_FILE)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise TinylmError(
            f"checkpoint {folder} does not fit this model ({detail}); build the model from "
            f"the checkpoint's {CONFIG_FILE}"
        ) from None


# -- a run's checkpoints -----------------------------------------------------------------


class CheckpointManager:
    """``run_dir/ckpt-000123`` every save, the last ``keep_last`` kept, plus ``run_dir/best``.

    ``best`` is its own complete checkpoint directory (hard links to the files
    of the step that earned it, or copies where links are not possible), so
    pruning old steps never touches it. Which step is best is also written into
    every checkpoint's state.json (``best``), so the identity survives a ``best/``
    lost to a crash between its two renames: it is then found again (the step's
    own folder, or the copy left aside) or refused with a message, never replaced
    silently by the latest checkpoint. A manager made on an existing run
    directory continues where it left off.
    """

    def __init__(self, run_dir: str | os.PathLike, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise TinylmError(f"keep_last must be at least 1, got {keep_last}")
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last

    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        *,
        val_loss: float | None = None,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> Path:
        """Save step ``step``; publish it as ``best`` if ``val_loss`` is the lowest yet.

        ``kwargs`` are :func:`save_checkpoint`'s (config, tokenizer, extra,
        generators, train_config).
        """
        metrics = dict(metrics or {})
        best = self.recorded_best()
        improved = val_loss is not None and _improves(float(val_loss), best)
        if improved:
            metrics["val_loss"] = float(val_loss)
            best = {"step": int(step), "val_loss": float(val_loss)}
        elif val_loss is not None:
            metrics["val_loss"] = float(val_loss)
        path = save_checkpoint(
            self.run_dir / f"ckpt-{step:06d}",
            model,
            optimizer,
            step,
            metrics=metrics,
            best=best,
            **kwargs,
        )
        if improved:
            self._publish_best(path)
        self._prune()
        return path

    def checkpoints(self) -> list[Path]:
        """Step checkpoints, oldest first."""
        if not self.run_dir.is_dir():
            return []
        found = [
            (int(match.group(1)), entry)
            for entry in self.run_dir.iterdir()
            if entry.is_dir() and (match := _CKPT_NAME.match(entry.name))
        ]
        return [entry for _, entry in sorted(found)]

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def recorded_best(self) -> dict[str, Any] | None:
        """``{"step", "val_loss"}`` of the run's best checkpoint, as the run state records it.

        The latest checkpoint's state.json says which step is best; runs saved
        before it did fall back to what ``best/`` itself holds.
        """
        latest = self.latest()
        if latest is not None:
            state = _read_state(latest)
            if "best" in state:
                return state["best"]
        folder = self.run_dir / "best"
        if not (folder / STATE_FILE).is_file():
            return None
        state = _read_state(folder)
        val_loss = state["metrics"].get("val_loss")
        if val_loss is None or val_loss != val_loss:
            return None
        return {"step": state["step"], "val_loss": val_loss}

    def best(self) -> Path | None:
        """The best checkpoint's folder; None if no evaluation has been saved yet.

        Usually ``best/``. If ``best/`` is missing or holds another step (a crash
        between saving a step and publishing it), the recorded step's own folder
        is used when it still exists; otherwise this is an error, never the latest.
        """
        record = self.recorded_best()
        folder = self.run_dir / "best"
        if record is None:
            return folder if (folder / STATE_FILE).is_file() else None
        if (folder / STATE_FILE).is_file() and _read_state(folder)["step"] == record["step"]:
            return folder
        own = self.run_dir / f"ckpt-{record['step']:06d}"
        if (own / STATE_FILE).is_file():
            return own
        raise TinylmError(
            f"the best checkpoint of {self.run_dir} (step {record['step']}, val loss "
            f"{record['val_loss']:.4f}) is missing: {folder} was lost or replaced; resume the "
            "run once to restore it, or use the latest checkpoint instead"
        )

    def best_val_loss(self) -> float | None:
        record = self.recorded_best()
        return None if record is None else record["val_loss"]

    def recover(self) -> list[str]:
        """Tidy up after a killed run; return what was done, one line each.

        Removes the hidden temporary folders and files an interrupted save leaves
        (``.ckpt-N.tmp-*``, ``.best.tmp-*``, ``.metrics.jsonl.*.tmp``), puts a
        folder renamed aside (``.best.old-*``) back when its place is empty, and
        republishes ``best/`` from the recorded best step when it went missing.
        Call it when a run starts writing, never while another process writes.
        """
        done = recover_interrupted(self.run_dir, STATE_FILE)
        record = self.recorded_best() if self.run_dir.is_dir() else None
        folder = self.run_dir / "best"
        if record is not None:
            has_best = (folder / STATE_FILE).is_file()
            if not has_best or _read_state(folder)["step"] != record["step"]:
                own = self.run_dir / f"ckpt-{record['step']:06d}"
                if (own / STATE_FILE).is_file():
                    self._publish_best(own)
                    done.append(f"restored {folder} from {own.name}")
        return done

    def _publish_best(self, source: Path) -> None:
        with atomic_directory(self.run_dir / "best", STATE_FILE, "tinylm checkpoint") as tmp:
            for file in source.iterdir():
                try:
                    os.link(file, tmp / file.name)
                except OSError:
                    shutil.copy2(file, tmp / file.name)

    def _prune(self) -> None:
        """Delete all but the last ``keep_last`` steps, and never the only copy of the best."""
        record = self.recorded_best()
        folder = self.run_dir / "best"
        published = record is None or (
            (folder / STATE_FILE).is_file() and _read_state(folder)["step"] == record["step"]
        )
        keep = set() if published else {self.run_dir / f"ckpt-{record['step']:06d}"}
        for old in self.checkpoints()[: -self.keep_last]:
            if old not in keep:
                shutil.rmtree(old, ignore_errors=True)


def _improves(val_loss: float, best: dict[str, Any] | None) -> bool:
    if val_loss != val_loss:  # NaN is never an improvement
        return False
    return best is None or val_loss < best["val_loss"]
