"""The training engines, by name: what ``engine=`` chooses (and the CLI).

* ``pytorch`` (the default, :mod:`~tinylm.engines.pytorch`): tinylm's ``GPT`` and
  ``Trainer``;
* ``scratch`` (:mod:`~tinylm.engines.scratch`): ``tinylm.scratch``'s microgpt in
  plain Python scalars.

Each is an :class:`~tinylm.engines.base.Engine`; ``tinylm.run.start`` looks one
up here and drives it, with no engine of its own in mind. A run's ``run.json``
names the engine that trained it (runs without the field are PyTorch runs, from
before there were two), and only that engine continues it.

Importing this package leaves torch unloaded, so the CLI can list the names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tinylm.engines.base import Engine
from tinylm.engines.pytorch import PyTorchEngine
from tinylm.engines.scratch import ScratchEngine
from tinylm.errors import SettingError

ENGINES: dict[str, Engine] = {engine.name: engine for engine in (PyTorchEngine(), ScratchEngine())}
DEFAULT_ENGINE = "pytorch"


def engine_named(name: str | None) -> Engine:
    """The engine called ``name`` (``None``: the default one); an unknown name is refused."""
    name = DEFAULT_ENGINE if name is None else name
    if name not in ENGINES:
        raise SettingError(
            f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}",
            setting="engine",
            reason="unknown_engine",
            key="engine",
            value=name,
        )
    return ENGINES[name]


def engine_of_run(run: Mapping[str, Any]) -> Engine:
    """The engine that trained the run described by ``run`` (its ``run.json``)."""
    return engine_named(run.get("engine") or DEFAULT_ENGINE)
