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
from safetensors.torch import save_file
from torch import Tensor, nn

from tinylm.errors import TinylmError
from tinylm.fileio import _umask, atomic_directory, check_format
from tinylm.tokenizers.base import Tokenizer

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
    """``safetensors`` ``save_file`` with the permissions a plain ``open()`` would give.

    safetensors creates its files 0600, so without this the weights of a run were
    private while the JSON files beside them were readable like any other file.
    """
    save_file(tensors, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~_umask())


def _load_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors of a safetensors file (aliases re-attached) and its metadata."""
    if not path.is_file():
        raise TinylmError(
            f"{path.parent} is not a tinylm checkpoint (missing {path.name}); {_HINT}"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise TinylmError(
            f"{path} is truncated or corrupt ({exc}); point at an earlier ckpt-* folder of the "
            f"run, or move {path.parent.name} out of the run folder to resume from the one before"
        ) from None
    for alias, name in json.loads(metadata.get("aliases", "{}")).items():
        tensors[alias] = tensors[name]
    return tensors, metadata


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
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__dict__"]}
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
    saved = _read_json(folder / OPTIMIZER_JSON)
    try:
        optimizer.load_state_dict(_decode(saved["state"], tensors))
    except (KeyError, ValueError, RuntimeError) as exc:
        raise TinylmError(
            f"optimizer state in {folder} does not fit this optimizer ({saved.get('optimizer')} "
            f"saved; {str(exc).splitlines()[0]}); resume with the run's own settings"
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


def _restore_global_rng(tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    torch.set_rng_state(tensors["torch"])
    np_name, np_pos, np_has_gauss, np_gauss = json.loads(metadata["numpy"])
    np_keys = tensors["numpy"].numpy().astype(np.uint32)
    np.random.set_state((np_name, np_keys, np_pos, np_has_gauss, np_gauss))
    py_version, py_gauss = json.loads(metadata["python"])
    random.setstate((py_version, tuple(tensors["python"].tolist()), py_gauss))
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            if f"cuda.{index}" in tensors:
                torch.cuda.set_rng_state(tensors[f"cuda.{index}"], index)


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
        generator.set_state(state)


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
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TinylmError(
            f"{path.parent} is not a tinylm checkpoint (missing {path.name}); {_HINT}"
        ) from None
    except (OSError, ValueError) as exc:
        raise TinylmError(f"{path} is unreadable or corrupt ({exc})") from None


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
) -> Path:
    """Write a checkpoint directory at ``path`` atomically; return its path.

    ``optimizer=None`` saves weights only (for sampling). ``config`` defaults to
    ``model.config``. ``tokenizer`` is a Tokenizer or a tokenizer file to copy.
    ``generators`` are named ``torch.Generator``s whose state must resume (the
    batch generator). ``extra`` is the trainer's own JSON-able resume state (data
    position, counters); ``metrics`` (e.g. ``val_loss``) and ``train_config`` are
    JSON too. The global RNG states are always saved.
    """
    path = Path(path)
    with atomic_directory(path, STATE_FILE, "tinylm checkpoint") as tmp:
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
        _write_json(tmp / STATE_FILE, _state_record(step, metrics, extra))
    return path


def _state_record(step: int, metrics: dict | None, extra: dict | None) -> dict[str, Any]:
    from tinylm import __version__

    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created_by": f"tinylm {__version__}",
        "step": int(step),
        "metrics": {name: float(value) for name, value in (metrics or {}).items()},
        "extra": extra or {},
    }


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
    state = _read_json(folder / STATE_FILE)
    what = f"tinylm checkpoint ({STATE_FILE} is foreign or from another version)"
    return check_format(state, FORMAT_NAME, FORMAT_VERSION, folder, what, _HINT)


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint says about itself, without loading tensors.

    Keys: ``path`` (the resolved directory), ``step``, ``config`` (model config
    dict, for ``ModelConfig.from_dict``), ``train_config``, ``metrics``,
    ``extra``, ``state`` (all of state.json) and ``tokenizer`` (path of
    tokenizer.json, or ``None`` when the checkpoint has none).
    """
    folder = resolve_checkpoint(path)
    state = _read_state(folder)
    config = _read_json(folder / CONFIG_FILE)
    tokenizer = folder / TOKENIZER_FILE
    return {
        "path": folder,
        "step": state["step"],
        "config": config.get("model"),
        "train_config": config.get("train"),
        "metrics": state.get("metrics", {}),
        "extra": state.get("extra", {}),
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
    _load_model(folder, model)
    if optimizer is not None:
        _load_optimizer(folder, optimizer)
    if restore_rng is None:
        restore_rng = optimizer is not None
    if generators or restore_rng:
        rng_tensors, rng_metadata = _load_tensors(folder / RNG_FILE)
        _restore_generators(folder, rng_tensors, generators or {})
        if restore_rng:
            _restore_global_rng(rng_tensors, rng_metadata)
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
    pruning old steps never touches it. The file system is the only state: a
    manager made on an existing run directory continues where it left off.
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
        if val_loss is not None:
            metrics["val_loss"] = float(val_loss)
        path = save_checkpoint(
            self.run_dir / f"ckpt-{step:06d}", model, optimizer, step, metrics=metrics, **kwargs
        )
        if val_loss is not None and self._improves(float(val_loss)):
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

    def best(self) -> Path | None:
        best = self.run_dir / "best"
        return best if (best / STATE_FILE).is_file() else None

    def best_val_loss(self) -> float | None:
        best = self.best()
        if best is None:
            return None
        return _read_state(best).get("metrics", {}).get("val_loss")

    def _improves(self, val_loss: float) -> bool:
        if val_loss != val_loss:  # NaN is never an improvement
            return False
        best = self.best_val_loss()
        return best is None or val_loss < best

    def _publish_best(self, source: Path) -> None:
        with atomic_directory(self.run_dir / "best", STATE_FILE, "tinylm checkpoint") as tmp:
            for file in source.iterdir():
                try:
                    os.link(file, tmp / file.name)
                except OSError:
                    shutil.copy2(file, tmp / file.name)

    def _prune(self) -> None:
        for old in self.checkpoints()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
