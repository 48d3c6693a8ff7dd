"""tinylm: a GPT-style language model built from scratch, end to end.

Tokenizers (``CharTokenizer``, ``BPETokenizer``, ``load_tokenizer``) need only the
standard library and ``regex``; the model (``ModelConfig``, ``GPT``) needs PyTorch.
Names are imported lazily, so ``from tinylm import BPETokenizer`` never imports torch.
This is the one lazy package; every other package imports its names plainly.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "TinylmError": "tinylm.errors",
    "CharTokenizer": "tinylm.tokenizers.char",
    "BPETokenizer": "tinylm.tokenizers.bpe",
    "load_tokenizer": "tinylm.tokenizers.formats",
    "ModelConfig": "tinylm.model.config",
    "GPT": "tinylm.model.gpt",
    "start_run": "tinylm.run.start",
    "resume_run": "tinylm.run.start",
    "init_from": "tinylm.run.start",
    "load_model": "tinylm.inference.loading",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use (PEP 562)."""
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
