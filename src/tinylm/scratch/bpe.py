"""Byte-pair encoding, the readable way: count pairs, merge the most frequent, repeat.

Text is UTF-8 bytes, so the 256 byte values are the first 256 tokens and any
string can be encoded. Training looks at every adjacent pair of tokens in the
corpus, merges the most frequent pair into a new token, and repeats until the
vocabulary is full. Encoding replays the merges in the order they were learned;
decoding joins the tokens' bytes.

Two rules come before the counting:

* **Special tokens** (``<|endoftext|>`` ...) are cut out of the text first. They
  get ids of their own, after the merges, and are never counted or merged.
* **Pre-tokenization**: the rest is split by GPT-2's regex into words with their
  leading space, runs of digits, runs of punctuation and whitespace, and pairs
  are counted inside those pieces only. Otherwise BPE would learn ``"dog."`` and
  ``"dog!"`` as separate tokens. Documents are split one by one, so nothing is
  merged across documents either.

Ties between equally frequent pairs go to the greater pair of byte strings
(then to lower ids), the rule of the fast trainer, ``tinylm.tokenizers.bpe_train``,
which learns the same merges; that one just avoids recounting every pair after
each merge, which is what makes this one slow.

GPT-2's pattern is written for the ``regex`` module (``\\p{L}`` is "any letter",
``\\p{N}`` "any number"). This package uses the standard library only, whose
``re`` has no ``\\p{...}``, so the two classes are spelled out here from
``unicodedata``: the same pattern, letter for letter, for every character that
Python's Unicode database knows. (``regex`` may ship a newer Unicode version;
characters assigned only there are the one place the two could differ.)
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from functools import lru_cache

#: ``\s`` of the ``regex`` module: the characters with Unicode's White_Space property.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def unicode_class(major_category: str) -> str:
    """A ``re`` set body for every character whose category starts with ``major_category``
    (``"L"``: letters, ``"N"``: numbers), as ranges of consecutive code points."""
    ranges, start = [], None
    for code in range(0x110001):
        inside = code < 0x110000 and unicodedata.category(chr(code))[0] == major_category
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            ranges.append(f"\\U{start:08x}-\\U{code - 1:08x}")
            start = None
    return "".join(ranges)


@lru_cache(maxsize=1)
def gpt2_pattern() -> re.Pattern:
    """GPT-2's pre-tokenizer: contractions, words, numbers, punctuation, whitespace."""
    L, N, S = unicode_class("L"), unicode_class("N"), WHITESPACE
    return re.compile(
        rf"'(?:[sdmt]|ll|ve|re)| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+$|[{S}]+(?![^{S}])|[{S}]"
    )


def split_specials(text: str, specials: Collection[str]) -> list[str]:
    """``text`` cut around the special tokens, which are kept as pieces of their own
    (longest first where two could match at the same place)."""
    if not specials:
        return [text]
    longest_first = sorted(specials, key=len, reverse=True)
    alternatives = "|".join(re.escape(s) for s in longest_first)
    return [piece for piece in re.split(f"({alternatives})", text) if piece]


def count_pairs(words: dict[tuple[int, ...], int]) -> Counter:
    """How often each adjacent pair of ids occurs, each word weighted by its count."""
    pairs: Counter = Counter()
    for word, count in words.items():
        for pair in zip(word, word[1:], strict=False):
            pairs[pair] += count
    return pairs


def merge(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> tuple[int, ...]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new_id``."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return tuple(out)


class BPE:
    """A vocabulary of bytes, the ordered merges that built it, and special tokens."""

    def __init__(self, merges: dict[tuple[int, int], int], special_tokens: Sequence[str] = ()):
        self.merges = merges  # (left id, right id) -> new id, in the order learned
        self.vocab = {i: bytes([i]) for i in range(256)}
        for (left, right), new_id in merges.items():
            self.vocab[new_id] = self.vocab[left] + self.vocab[right]
        self.special_tokens = {s: len(self.vocab) + i for i, s in enumerate(special_tokens)}
        self.vocab.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})

    @classmethod
    def train(
        cls, documents: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = ()
    ) -> BPE:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges (fewer if no pair is left)."""
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(f"vocab_size must be at least {256 + len(special_tokens)}")
        # Every distinct pre-token once, as a tuple of byte ids, with its count.
        words: Counter = Counter()
        for document in documents:
            for piece in split_specials(document, special_tokens):
                if piece not in special_tokens:
                    words.update(tuple(w.encode("utf-8")) for w in gpt2_pattern().findall(piece))
        vocab = {i: bytes([i]) for i in range(256)}
        merges: dict[tuple[int, int], int] = {}
        for new_id in range(256, 256 + num_merges):
            pairs = count_pairs(words)
            if not pairs:
                break  # every pre-token is a single token: nothing left to merge
            # The most frequent pair; ties: greater bytes, then lower ids.
            best = max(pairs, key=lambda p: (pairs[p], vocab[p[0]], vocab[p[1]], -p[0], -p[1]))
            merges[best] = new_id
            vocab[new_id] = vocab[best[0]] + vocab[best[1]]
            words = Counter({merge(w, best, new_id): n for w, n in words.items()})
        return cls(merges, special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def merge_list(self) -> list[tuple[bytes, bytes]]:
        """The merges as pairs of byte strings, in order (the fast tokenizer's form)."""
        return [(self.vocab[a], self.vocab[b]) for a, b in self.merges]

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids for ``text`` with no special tokens recognised."""
        ids: list[int] = []
        for word in gpt2_pattern().findall(text):
            tokens = tuple(word.encode("utf-8"))
            while len(tokens) > 1:
                # The pair learned earliest is merged first, as in training.
                pair = min(
                    zip(tokens, tokens[1:], strict=False),
                    key=lambda p: self.merges.get(p, float("inf")),
                )
                if pair not in self.merges:
                    break
                tokens = merge(tokens, pair, self.merges[pair])
            ids.extend(tokens)
        return ids

    def encode(self, text: str, allowed_special: Collection[str] | str = ()) -> list[int]:
        """Ids for ``text``; special tokens in ``allowed_special`` (or ``"all"``) become
        their ids, and any other special token in the text is an error (it was more
        likely typed by a user than meant as a boundary)."""
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        ids: list[int] = []
        for piece in split_specials(text, list(self.special_tokens)):
            if piece in self.special_tokens:
                if piece not in allowed:
                    raise ValueError(f"text holds the special token {piece!r}; allow it to encode")
                ids.append(self.special_tokens[piece])
            else:
                ids.extend(self.encode_ordinary(piece))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; a character cut in half by the ids decodes as U+FFFD."""
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")
