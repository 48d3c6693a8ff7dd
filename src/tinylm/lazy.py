"""Lazy package exports (PEP 562), so importing a name never imports more than it needs.

``from tinylm import BPETokenizer`` must not import torch, and ``tinylm.train``
should not import the trainer just to hand out ``AdamW``. Each package lists its
public names and the module that defines each; the module is imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that imports ``exports[name]`` when asked for it."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
