"""Saving a checkpoint folder atomically, and loading one back: weights, optimizer, RNGs.

**Atomicity.** The folder is built under a temporary name beside the target,
every file fsynced, then renamed into place (``tinylm.fileio.atomic_directory``);
an existing checkpoint of the same name is renamed aside first and deleted only
after the new one is in place. A crash leaves the old checkpoint or the new one,
never half of either.

**Loading checks before it allocates.** A path is resolved to a checkpoint
folder (a run folder means its latest), state.json is checked, and the weights'
names, shapes and dtypes are compared with the model from the file header alone,
so a foreign, edited or damaged checkpoint is one line naming the file, and an
edited config asking for a vocabulary of 10^12 is refused in milliseconds.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tinylm.checkpoint.hints import POINT_AT_CHECKPOINT, corrupt_hint
from tinylm.checkpoint.json_files import write_json
from tinylm.checkpoint.meta import CheckpointMeta, read_meta, read_state, state_record
from tinylm.checkpoint.optimizer_state import load_optimizer, save_optimizer
from tinylm.checkpoint.rng import restore_rng_states, save_rng_states
from tinylm.checkpoint.tensor_files import load_tensors, save_tensors, stored_shapes
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_directory
from tinylm.model.lora import has_lora, merged_state_dict
from tinylm.run_layout import (
    CHAT_TEMPLATE_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    STATE_FILE,
    TOKENIZER_FILE,
    step_checkpoints,
)
from tinylm.tokenizers.base import Tokenizer
from tinylm.untrusted_files import FLOAT_DTYPES

# -- save -------------------------------------------------------------------------------------


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
    chat_template: dict[str, Any] | None = None,
    write_more: Callable[[Path], None] | None = None,
) -> Path:
    """Write a checkpoint directory at ``path`` atomically; return its path.

    ``optimizer=None`` saves weights only (for sampling). ``config`` defaults to
    ``model.config``. ``tokenizer`` is a Tokenizer or a tokenizer file to copy.
    ``generators`` are named ``torch.Generator``s whose state must resume (the
    batch generator). ``extra`` is the trainer's own JSON-able resume state (data
    position, counters); ``metrics`` (e.g. ``val_loss``) and ``train_config`` are
    JSON too. ``best`` (``{"step", "val_loss"}``) records which step is the run's
    best so far (:class:`CheckpointManager` sets it). ``chat_template`` is the
    record of :func:`tinylm.chat.template.template_record`, saved for a chat model
    so that everything that reads the checkpoint renders conversations alike. The
    global RNG states are always saved.

    A model with LoRA adapters (``tinylm.model.lora``) is saved merged: the
    checkpoint holds an ordinary model. ``write_more(folder)`` adds files of the
    caller's own (a LoRA run's adapter) to the folder before it is published.
    """
    path = Path(path)
    weights = merged_state_dict(model) if has_lora(model) else model.state_dict()
    size = tensor_bytes(weights) + tensor_bytes(
        optimizer.state_dict() if optimizer is not None else {}
    )
    with atomic_directory(path, STATE_FILE, "tinylm checkpoint", size=size) as tmp:
        save_tensors(tmp / MODEL_FILE, weights, {"format": "pt"})
        if write_more is not None:
            write_more(tmp)
        if optimizer is not None:
            save_optimizer(tmp, optimizer)
        save_rng_states(tmp, generators)
        write_json(tmp / CONFIG_FILE, {"model": config_dict(config, model), "train": train_config})
        if isinstance(tokenizer, Tokenizer):
            tokenizer.save(tmp / TOKENIZER_FILE)
        elif tokenizer is not None:
            if not Path(tokenizer).is_file():
                raise TinylmError(f"tokenizer file {tokenizer} does not exist; pass a Tokenizer")
            shutil.copyfile(tokenizer, tmp / TOKENIZER_FILE)
        if chat_template is not None:
            write_json(tmp / CHAT_TEMPLATE_FILE, chat_template)
        write_json(tmp / STATE_FILE, state_record(step, metrics, extra, best))
    return path


def tensor_bytes(value: Any, seen: set | None = None) -> int:
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
        return sum(tensor_bytes(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in value)
    return 0


def config_dict(config: Any, model: nn.Module) -> dict[str, Any] | None:
    """The model config as a plain dict; taken from ``model.config`` when not given."""
    config = getattr(model, "config", None) if config is None else config
    if config is None or isinstance(config, dict):
        return config
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    raise TinylmError(f"config must be a dict or a dataclass, got {type(config).__name__}")


# -- which folder a path means ------------------------------------------------------------------


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory ``path`` means: itself, or a run directory's latest one."""
    path = Path(path)
    if not path.exists():
        aside = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
        note = f" (an interrupted save left its predecessor at {aside[-1]})" if aside else ""
        raise TinylmError(f"checkpoint {path} does not exist{note}; {POINT_AT_CHECKPOINT}")
    if path.is_dir() and not (path / MODEL_FILE).exists():
        found = step_checkpoints(path)
        if found:
            return found[-1]
    if not path.is_dir() or not (path / MODEL_FILE).is_file():
        raise TinylmError(
            f"{path} is not a tinylm checkpoint (missing {MODEL_FILE}); {POINT_AT_CHECKPOINT}"
        )
    return path


def read_checkpoint_meta(path: str | os.PathLike) -> CheckpointMeta:
    """What a checkpoint (or a run folder's latest) says about itself, without loading tensors."""
    return read_meta(resolve_checkpoint(path))


# -- does it fit ------------------------------------------------------------------------------


def stored_tensors(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (safetensors dtype, shape)}`` of a checkpoint's weights, read from the header.

    Nothing is loaded, so a caller can compare the shapes with a model built on
    the ``meta`` device before allocating one (an edited ``config.json`` asking
    for a vocabulary of 10^12 is refused in milliseconds).
    """
    return stored_shapes(resolve_checkpoint(path) / MODEL_FILE)


def check_fits(path: str | os.PathLike, model: nn.Module) -> None:
    """Refuse a checkpoint whose weights' names, shapes or dtypes do not fit ``model``.

    ``model`` may live on the ``meta`` device: only its state dict's shapes and
    dtypes are used. Integer or boolean tensors where the model has floating
    weights are refused rather than cast, which would load garbage silently.
    """
    folder = resolve_checkpoint(path)
    refuse_quantized(folder)
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
                f"the file was made by another program or edited, {corrupt_hint(folder)}"
            )


def refuse_quantized(folder: Path) -> None:
    """Refuse a checkpoint ``tinylm quantize`` wrote: its int8 or bfloat16 weights are
    rounded, and training (or anything else loading float weights) would start from
    them unawares. ``tinylm.inference.loading.load_model`` reads such a checkpoint."""
    weights = read_state(folder).get("weights", "float32")
    if weights != "float32":
        raise TinylmError(
            f"checkpoint {folder} holds {weights} weights made by tinylm quantize, which "
            "sample, eval and export read but training does not; train from the float run "
            "it was made from"
        )


# -- load -------------------------------------------------------------------------------------


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    generators: dict[str, torch.Generator] | None = None,
    restore_rng: bool | None = None,
    weights: bool = True,
) -> int:
    """Restore weights (and optimizer, generators, RNGs) from a checkpoint; return its step.

    ``generators`` are restored in place by name. The global RNGs (torch, CUDA,
    numpy, python) are restored when ``restore_rng`` is true; by default they
    are exactly when an optimizer is given, i.e. when resuming training, and
    left alone when merely loading weights to sample or evaluate. ``weights=False``
    leaves the model alone (a LoRA run's trainer rebuilds its own, see
    ``tinylm.train.lora_run``).
    """
    folder = resolve_checkpoint(path)
    state = read_state(folder)
    if weights:
        check_fits(folder, model)
        _load_weights(folder, model)
    if optimizer is not None:
        load_optimizer(folder, optimizer)
    if restore_rng is None:
        restore_rng = optimizer is not None
    if generators or restore_rng:
        restore_rng_states(folder, generators, global_rngs=restore_rng)
    return int(state["step"])


def _load_weights(folder: Path, model: nn.Module) -> None:
    tensors, _ = load_tensors(folder / MODEL_FILE)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise TinylmError(
            f"checkpoint {folder} does not fit this model ({detail}); build the model from "
            f"the checkpoint's {CONFIG_FILE}"
        ) from None
