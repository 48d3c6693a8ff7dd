"""Tokenizers: text <-> ids. They stand alone: no torch, no model.

The stages are named as in Hugging Face tokenizers: a *pre-tokenizer*
(``pretokenize.py``) splits text at boundaries merges never cross, the *model*
(``char.py``, ``bpe.py``, trained by ``bpe_train.py``) maps pieces to ids, and the
*decoder* (``decode`` on each tokenizer) maps ids back to text. ``formats.py``
reads and writes tinylm's files and the GPT-2 / tiktoken vocabularies.
"""

from __future__ import annotations

from tinylm.lazy import lazy_exports

_EXPORTS = {
    "Tokenizer": "tinylm.tokenizers.base",
    "CharTokenizer": "tinylm.tokenizers.char",
    "BPETokenizer": "tinylm.tokenizers.bpe",
    "load_tokenizer": "tinylm.tokenizers.formats",
    "train_bpe": "tinylm.tokenizers.bpe_train",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
