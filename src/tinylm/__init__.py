"""tinylm: a GPT-style language model built from scratch, end to end.

Tokenizers (``CharTokenizer``, ``BPETokenizer``, ``load_tokenizer``) need only the
standard library and ``regex``; the model (``ModelConfig``, ``GPT``) needs PyTorch.
Names are imported lazily, so ``from tinylm import BPETokenizer`` never imports torch.
"""

from __future__ import annotations

from tinylm.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "TinylmError": "tinylm.errors",
    "CharTokenizer": "tinylm.tokenizers.char",
    "BPETokenizer": "tinylm.tokenizers.bpe",
    "load_tokenizer": "tinylm.tokenizers.formats",
    "ModelConfig": "tinylm.model.config",
    "GPT": "tinylm.model.gpt",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__ = lazy_exports(__name__, _EXPORTS)
