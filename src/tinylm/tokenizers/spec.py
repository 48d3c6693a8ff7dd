"""Tokenizer specs: the one way a short string names a tokenizer.

Every command that takes a tokenizer takes a *spec*:

* ``char``: a character tokenizer, trained on the corpus at hand;
* ``bpe:N``: a byte-level BPE of ``N`` ids, trained on the corpus at hand;
* anything else: a tokenizer file (tinylm JSON, ``.tiktoken``, GPT-2's
  ``encoder.json``/``vocab.bpe``, Hugging Face's ``tokenizer.json``), read by
  :func:`tinylm.tokenizers.formats.load_tokenizer`.

:func:`parse_tokenizer_spec` checks a spec without doing any work (so a typo
fails before a corpus is read), and :func:`tokenizer_from_spec` turns it into a
tokenizer. Like the rest of ``tinylm.tokenizers`` this needs no torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.documents import iter_documents
from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.formats import load_tokenizer
from tinylm.untrusted_files import check_readable_file, describe

#: The special token BPE specs are trained with: it marks document boundaries.
DEFAULT_SPECIALS = ("<|endoftext|>",)
BPE_PREFIX = "bpe:"


@dataclass(frozen=True)
class TokenizerSpec:
    """A parsed spec: ``kind`` is ``"char"``, ``"bpe"`` (with ``vocab_size``) or ``"file"``."""

    kind: str
    vocab_size: int | None = None
    path: Path | None = None

    @property
    def trained(self) -> bool:
        """Whether the tokenizer is trained on a corpus (``char``, ``bpe:N``), not read."""
        return self.kind != "file"


def parse_tokenizer_spec(spec: str | os.PathLike) -> TokenizerSpec:
    """``char``, ``bpe:N`` or an existing file; anything else is a one-line error."""
    text = os.fspath(spec)
    if text == "char":
        return TokenizerSpec("char")
    if text.startswith(BPE_PREFIX):
        try:
            size = int(text[len(BPE_PREFIX) :])
        except ValueError:
            size = 0
        if size < 1:
            raise TinylmError(f"bad tokenizer spec {text!r}; write bpe:N, e.g. bpe:1024")
        return TokenizerSpec("bpe", vocab_size=size)
    path = Path(text)
    kind = describe(path)
    if kind not in (None, "missing"):  # a FIFO, a loop: say what it is, never open it
        check_readable_file(path, "tokenizer file")
    if not path.is_file():
        raise TinylmError(
            f"tokenizer {text!r} is not a file, 'char' or 'bpe:N'; give a tokenizer file"
        )
    return TokenizerSpec("file", path=path)


def tokenizer_from_spec(
    spec: str | os.PathLike | TokenizerSpec,
    corpus: Any = None,
    *,
    separator: str = "eot",
    unknown: str = "error",
    pattern: str | None = None,
    progress: bool = False,
) -> Tokenizer:
    """The tokenizer a spec names: trained on ``corpus`` (char, bpe:N) or read (a file).

    ``corpus`` is what :func:`tinylm.data.corpus.corpus_from_specs` returns (paths or
    documents); ``separator`` cuts it into documents
    (:func:`tinylm.documents.iter_documents`). ``unknown`` is the char tokenizer's
    policy for unseen characters (``"reserve"`` suits a viewer that must show any
    text); ``pattern`` the pre-tokenizer of a file that lacks one.
    """
    parsed = spec if isinstance(spec, TokenizerSpec) else parse_tokenizer_spec(spec)
    if parsed.kind == "file":
        return load_tokenizer(parsed.path, pattern=pattern)
    if corpus is None:
        raise TinylmError(f"the tokenizer spec {parsed.kind!r} is trained on a corpus; give one")
    if parsed.kind == "char":
        return CharTokenizer.train(corpus, unknown=unknown, separator=separator)
    documents: Iterable[Any] = corpus if separator == "eot" else iter_documents(corpus, separator)
    return BPETokenizer.train(
        documents, parsed.vocab_size, special_tokens=DEFAULT_SPECIALS, progress=progress
    )
