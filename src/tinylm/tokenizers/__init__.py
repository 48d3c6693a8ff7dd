"""Tokenizers: text <-> ids. They stand alone: no torch, no model.

The stages are named as in Hugging Face tokenizers: a *pre-tokenizer*
(``pretokenize.py``) splits text at boundaries merges never cross, the *model*
(``char.py``, ``bpe.py``, trained by ``bpe_train.py``) maps pieces to ids, and the
*decoder* (``decode`` on each tokenizer) maps ids back to text. Each tokenizer
saves and reads its own JSON file; ``formats.py`` reads the foreign vocabularies
(tiktoken, GPT-2) and ``load_tokenizer`` tells every kind of file apart.
"""

from __future__ import annotations

from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.bpe_train import train_bpe
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.formats import load_tokenizer

__all__ = ["BPETokenizer", "CharTokenizer", "Tokenizer", "load_tokenizer", "train_bpe"]
