"""What every tinylm tokenizer offers, whatever its model (chars or BPE).

Training code and the CLI rely only on this surface: ``encode``/``decode``,
``encode_document`` (a document wrapped in its boundary tokens), the special ids,
``vocab_size``, and a JSON save format with a fingerprint, so a prepared dataset
can tell whether it was made with the same tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from tinylm.errors import TinylmError
from tinylm.fileio import atomic_write
from tinylm.untrusted_files import check_format


def check_save_path(path: str | os.PathLike) -> None:
    """Raise a one-line error if ``path`` cannot be a tokenizer file: it is a folder.

    Callers that work long before saving (training) check first, so a wrong
    output path fails at once instead of after the work.
    """
    if os.path.isdir(path):
        raise TinylmError(
            f"{path} is a folder; give a file name for the tokenizer, "
            f"e.g. {os.path.join(path, 'tokenizer.json')}"
        )


#: Identifies tinylm's own tokenizer files; bumped when the layout changes.
FORMAT_NAME = "tinylm-tokenizer"
FORMAT_VERSION = 1


class Tokenizer(ABC):
    """Base class: owns the file format envelope and the document convention."""

    #: ``"char"`` or ``"bpe"``; stored in the file so ``load_tokenizer`` can dispatch.
    kind: str = ""

    #: Named special tokens -> ids (a BPE's ``<|endoftext|>``, the chat template's
    #: ``<|user|>``); the char tokenizer's BOS and UNK are attributes of their own.
    special_tokens: Mapping[str, int] = MappingProxyType({})

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (ids are ``0 .. vocab_size-1``)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: list[int]) -> str: ...

    @property
    @abstractmethod
    def bos_id(self) -> int | None:
        """Id that opens a document (``None`` when the tokenizer has none)."""

    @property
    @abstractmethod
    def eos_id(self) -> int | None:
        """Id that closes a document (``None`` when the tokenizer has none)."""

    def defined_ids(self) -> list[int] | None:
        """The ids that name a token, when some below ``vocab_size`` do not (else ``None``).

        A vocabulary can have holes: cl100k has a few, and a special token placed at
        65536 over 300 learned tokens leaves 65,236. Decoding one is an error, so a
        model must never be let to sample one.
        """
        return None

    @property
    def pad_id(self) -> int | None:
        """Id used to pad batches; its positions are left out of the loss."""
        return None

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` with special-token names read as plain text, never as specials.

        For text from outside (a conversation's messages), so a message that spells
        ``<|assistant|>`` cannot forge a turn. The char tokenizer never recognises
        specials in text, so its ``encode`` already does this; BPE overrides it.
        """
        return self.encode(text)

    def with_special_tokens(self, names: Sequence[str]) -> Tokenizer:
        """A copy with the special tokens ``names`` it lacks, at ids after all of its own."""
        raise TinylmError(f"{type(self).__name__} cannot gain special tokens")

    def token_byte_counts(self) -> list[int]:
        """UTF-8 bytes of the text each id stands for (index = id), for bits per byte.

        A loss per token depends on what a token is; a loss per byte of text does
        not, so it compares a char model with a BPE one. Special tokens (BOS, EOS,
        PAD) stand for no text and count 0, as do ids that name no token. This
        default decodes each id alone; a byte-level tokenizer overrides it, since one
        of its tokens may hold part of a character that decodes to nothing whole.
        """
        specials = {self.bos_id, self.eos_id, self.pad_id, *self.special_tokens.values()}
        defined = self.defined_ids()
        ids = set(range(self.vocab_size)) if defined is None else set(defined)
        return [
            0 if i in specials or i not in ids else len(self.decode([i]).encode("utf-8"))
            for i in range(self.vocab_size)
        ]

    def encode_document(self, text: str) -> list[int]:
        """Encode one document wrapped in its boundary tokens.

        The model learns where documents start and end from these tokens, and
        sampling can stop at the end token. A boundary the tokenizer lacks is
        simply left out.
        """
        ids = self.encode(text)
        head = [] if self.bos_id is None else [self.bos_id]
        tail = [] if self.eos_id is None else [self.eos_id]
        return head + ids + tail

    # -- saving ---------------------------------------------------------------

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The tokenizer's own fields (the envelope is added by :meth:`save`)."""

    def to_json(self) -> str:
        body = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "type": self.kind}
        body.update(self.to_dict())
        return json.dumps(body, ensure_ascii=False, indent=1) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as human-readable JSON, atomically."""
        check_save_path(path)
        atomic_write(path, self.to_json())

    def fingerprint(self) -> str:
        """A short hash of everything that decides the ids; equal iff same tokenizer."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def check_envelope(data: Any, source: str) -> str:
    """Validate a parsed tinylm tokenizer file and return its ``type``."""
    check_format(
        data,
        FORMAT_NAME,
        FORMAT_VERSION,
        source,
        "tinylm tokenizer file",
        "give a file written by `tinylm tokenizer train`, a .tiktoken file, or a GPT-2 "
        "encoder.json (a newer format needs a newer tinylm)",
    )
    kind = data.get("type")
    if kind not in ("char", "bpe"):
        raise TinylmError(f"{source} has unknown tokenizer type {kind!r}; expected char or bpe")
    return kind
