"""A run's settings, in layers: the model preset, then a TOML file, then overrides.

Later layers win: a preset (unless one is named, the engine's default:
``small`` for PyTorch) and ``TrainConfig``'s defaults, then a config file
(``[model]`` and ``[train]`` tables, or flat keys; ``[model]`` may name a
``preset``), then the overrides a caller passes
(``{"n_layer": 2, "lr": 3e-4}``). Every key is a field of ``ModelConfig`` or
``TrainConfig``; the two share no names, so a flat key needs no prefix.

The layers are only merged here; ``ModelConfig`` and ``TrainConfig`` check the
values, so a bad value fails with the field's own message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinylm.errors import SettingError, TinylmError

DEFAULT_PRESET = "small"
DEFAULT_TOKENIZER = "char"  # a spec: see tinylm.tokenizers.spec
#: How the error for an unknown key names the last layer (the CLI names its flag).
OVERRIDES = "overrides"


@dataclass(frozen=True)
class RunSettings:
    """The merged layers: a preset name, and model and train fields to set on top of it."""

    preset: str = DEFAULT_PRESET
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


def layer_settings(
    preset: str | None = None,
    config_file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    default_preset: str | None = None,
) -> RunSettings:
    """Merge preset → ``config_file`` → ``overrides``; an unknown key is an error.

    ``default_preset`` (the engine's; else ``small``) is the preset when neither
    the caller nor the config file names one.
    """
    file_preset, file_model, file_train = read_config_file(config_file)
    model, train = split_settings(dict(overrides or {}), OVERRIDES)
    return RunSettings(
        preset=preset or file_preset or default_preset or DEFAULT_PRESET,
        model={**file_model, **model},
        train={**file_train, **train},
    )


def field_names() -> tuple[list[str], list[str]]:
    """The keys read: ``(model config fields, train config fields)``.

    The model's include its retired fields (``attention``), which
    ``ModelConfig.from_dict`` reads in today's spelling with a note.
    """
    # torch-free start-up: cli/train_cmds imports this module for every tinylm command
    from tinylm.model.config import RETIRED_FIELDS

    # torch-free start-up: cli/train_cmds imports this module for every tinylm command
    from tinylm.model.config import field_names as model_fields
    from tinylm.train.config import train_field_names

    return [*model_fields(), *RETIRED_FIELDS], train_field_names()


def unknown_key(key: str, where: str) -> SettingError:
    """The error for a key that is no field of either config, listing the valid ones."""
    # torch-free start-up: importing tinylm.model loads torch
    from tinylm.model.config import field_names as model_fields

    model_keys, train_keys = model_fields(), field_names()[1]
    valid = f"model: {', '.join(model_keys)}; train: {', '.join(train_keys)}"
    return SettingError(
        f"unknown {where} key {key!r}; valid keys are {valid}",
        setting=where,
        reason="unknown_key",
        key=key,
        valid=valid,
    )


def split_settings(settings: Mapping[str, Any], where: str) -> tuple[dict, dict]:
    """Route flat ``key: value`` pairs to the model or the train config."""
    model_keys, train_keys = field_names()
    model, train = {}, {}
    for key, value in settings.items():
        if key in model_keys:
            model[key] = value
        elif key in train_keys:
            train[key] = value
        else:
            raise unknown_key(key, where)
    return model, train


def read_config_file(path: str | os.PathLike | None) -> tuple[str | None, dict, dict]:
    """``(preset, model settings, train settings)`` from a TOML file (all empty for None).

    ``[model]`` (which may name a ``preset``) and ``[train]`` tables, plus flat
    top-level keys routed by name; a table's key must belong to that table.
    """
    if path is None:
        return None, {}, {}
    # torch-free start-up: cli/train_cmds imports this module for every tinylm command
    from tinylm.train.config import read_toml

    path = Path(path)
    data = dict(read_toml(path))
    model, train = _table(data, "model", path), _table(data, "train", path)
    preset = model.pop("preset", None) or data.pop("preset", None)
    flat_model, flat_train = split_settings(data, path.name)
    model_keys, train_keys = field_names()
    for table, keys, valid in (("model", model, model_keys), ("train", train, train_keys)):
        for key in keys:
            if key not in valid:
                raise unknown_key(key, f"{path.name} [{table}]")
    return preset, {**flat_model, **model}, {**flat_train, **train}


def _table(data: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = data.pop(name, {})
    if not isinstance(table, dict):
        raise TinylmError(f"{name} in {path} must be a [{name}] table")
    return dict(table)
