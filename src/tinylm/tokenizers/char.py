"""The char-level tokenizer of the seed's microgpt: one id per character.

The vocabulary is the sorted set of characters seen in training, plus one special
token, BOS (id = number of characters), which both opens and closes a document:
``[BOS] + ids + [BOS]``. Tiny, exact and easy to read — and it shows why real
models use subwords: sequences are long, and an unseen character has no id.

Unseen characters raise by default, naming the character and its position,
because a model cannot say anything sensible about a symbol it never saw and a
silent substitute hides data problems. ``unknown="reserve"`` adds one more id,
UNK, for users who would rather map them (decoded as U+FFFD).

Special tokens beyond BOS (the chat template's ``<|user|>`` ...) are added with
:meth:`CharTokenizer.with_special_tokens`: they take the ids after BOS and UNK,
decode to their names, and are never produced by :meth:`~CharTokenizer.encode`
(text that spells a name is ordinary characters), so only code that inserts the
ids on purpose can place them.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tinylm.documents import iter_documents
from tinylm.errors import SettingError, TinylmError
from tinylm.tokenizers.base import Tokenizer

UNKNOWN_POLICIES = ("error", "reserve")


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "unnamed character")
    return f"{ch!r} (U+{ord(ch):04X} {name})"


class CharTokenizer(Tokenizer):
    """Sorted unique characters + BOS (+ UNK when ``unknown="reserve"``) + named specials."""

    kind = "char"

    def __init__(
        self, chars: Sequence[str], unknown: str = "error", special_tokens: Sequence[str] = ()
    ) -> None:
        if unknown not in UNKNOWN_POLICIES:
            raise TinylmError(f"unknown={unknown!r}; choose one of {', '.join(UNKNOWN_POLICIES)}")
        if any(len(ch) != 1 for ch in chars):
            raise TinylmError("every vocabulary entry of a char tokenizer must be one character")
        self.chars: list[str] = sorted(set(chars))
        if not self.chars:
            raise TinylmError("a char tokenizer needs at least one character; the corpus is empty")
        self.unknown = unknown
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.chars)}
        self.BOS = len(self.chars)
        self.UNK: int | None = self.BOS + 1 if unknown == "reserve" else None
        self.special_tokens: Mapping[str, int] = _number_specials(
            special_tokens, self.BOS + (2 if self.UNK is not None else 1)
        )
        self._special_names = {i: name for name, i in self.special_tokens.items()}

    @classmethod
    def train(
        cls,
        corpus: str | os.PathLike | Iterable[str | os.PathLike],
        unknown: str = "error",
        separator: str | None = "<|endoftext|>",
    ) -> CharTokenizer:
        """Collect the characters of a corpus (text, path, or iterable of either)."""
        seen: set[str] = set()
        for doc in iter_documents(corpus, separator):
            seen.update(doc)
        if not seen:
            raise TinylmError("the corpus is empty; give text with at least one character")
        return cls(sorted(seen), unknown=unknown)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + (2 if self.UNK is not None else 1) + len(self.special_tokens)

    @property
    def bos_id(self) -> int:
        return self.BOS

    @property
    def eos_id(self) -> int:
        return self.BOS

    def encode(self, text: str) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[ch] for ch in text]
        except KeyError:
            pass
        ids = []
        for position, ch in enumerate(text):
            if ch in stoi:
                ids.append(stoi[ch])
            elif self.UNK is not None:
                ids.append(self.UNK)
            else:
                raise SettingError(
                    f"character {_describe(ch)} at position {position} was not in the "
                    "training text; retrain the tokenizer on text that has it, or reserve an "
                    "unknown id (unknown='reserve')",
                    setting="unknown",
                    value="reserve",
                )
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Characters for ids; BOS is a boundary, not text, so it decodes to nothing."""
        out = []
        for i in ids:
            if 0 <= i < len(self.chars):
                out.append(self.chars[i])
            elif i == self.BOS:
                continue
            elif i == self.UNK:
                out.append("\ufffd")
            elif i in self._special_names:
                out.append(self._special_names[i])
            else:
                raise TinylmError(
                    f"id {i} is outside this char vocabulary (0..{self.vocab_size - 1})"
                )
        return "".join(out)

    def token_text(self, i: int) -> str:
        """How one id is shown to a human (used by ``tinylm tokenize``)."""
        if i == self.BOS:
            return "<BOS>"
        if i == self.UNK:
            return "<UNK>"
        if i in self._special_names:
            return self._special_names[i]
        return self.chars[i]

    def with_special_tokens(self, names: Sequence[str]) -> CharTokenizer:
        """This tokenizer plus the special tokens ``names`` it lacks, at the next free ids.

        Every id it had keeps its meaning, so a model trained with it still reads them.
        """
        new = [name for name in dict.fromkeys(names) if name not in self.special_tokens]
        return CharTokenizer(self.chars, self.unknown, [*self.special_tokens, *new])

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"chars": "".join(self.chars), "unknown": self.unknown}
        if self.special_tokens:  # absent otherwise: older files keep their fingerprint
            data["special_tokens"] = list(self.special_tokens)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        chars = data.get("chars")
        if not isinstance(chars, str):
            raise TinylmError("char tokenizer file lacks its 'chars' string; the file is corrupt")
        specials = data.get("special_tokens", [])
        if not isinstance(specials, list) or not all(isinstance(n, str) for n in specials):
            raise TinylmError(
                "char tokenizer file's 'special_tokens' is not a list of names; the file is corrupt"
            )
        return cls(list(chars), unknown=data.get("unknown", "error"), special_tokens=specials)


def _number_specials(names: Sequence[str], first: int) -> dict[str, int]:
    """Name -> id from ``first`` up, in order; names are non-empty and distinct."""
    if isinstance(names, str):
        raise TinylmError(f"special_tokens must be a list of names, not the string {names!r}")
    names = list(names)
    if len(set(names)) != len(names):
        raise TinylmError(f"special token names repeat: {names}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise TinylmError(f"special token name {name!r} must be a non-empty string")
    return {name: first + k for k, name in enumerate(names)}
