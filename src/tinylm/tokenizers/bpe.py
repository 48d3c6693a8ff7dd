"""Byte-level BPE: the tokenizer GPT-2, GPT-4 and most modern LMs use.

The pipeline has three stages, named as in Hugging Face tokenizers:

1. **pre-tokenizer** -- special tokens (``<|endoftext|>`` ...) are cut out of the
   text first, then the rest is split by a regex into *pre-tokens* (words with
   their leading space, digit runs, punctuation runs, whitespace). See
   :mod:`tinylm.tokenizers.pretokenize`.
2. **model** -- each pre-token is turned into UTF-8 bytes, one token per byte,
   and adjacent tokens are merged: repeatedly, the adjacent pair whose
   concatenation has the lowest merge rank is replaced by that concatenation,
   until no adjacent pair is a known token. This is tiktoken's algorithm, so ids
   equal tiktoken's on the same vocabulary. Because every single byte is a token,
   any string can be encoded: there is no unknown token.
3. **decoder** -- ids map back to bytes, which are joined and decoded as UTF-8.
   A sequence of ids may cut a character in half (a model can sample any id), so
   invalid UTF-8 is replaced with U+FFFD, exactly as tiktoken's
   ``decode(errors="replace")`` does.

Lone surrogates. Python strings may hold lone surrogates (``"\\ud800"``), which
are not Unicode characters and have no UTF-8 form. Like tiktoken, encoding first
joins valid surrogate *pairs* into their character and replaces lone ones with
U+FFFD, so ``decode(encode(s)) == s`` for every string without lone surrogates
and no string makes encoding fail.

This module is the algorithm, top to bottom: the merge loop, the tokenizer's
encode and decode, and its own file format. What makes it fast without changing an
id lives beside it: the per-pre-token cache (:mod:`~tinylm.tokenizers.bpe_cache`),
streaming (:mod:`~tinylm.tokenizers.bpe_stream`) and the process pool
(:mod:`~tinylm.tokenizers.bpe_pool`). The tables' checks are in
:mod:`~tinylm.tokenizers.bpe_vocab`, and special tokens -- which ones mark documents,
and when text may hold them -- in :mod:`~tinylm.tokenizers.bpe_specials`.
``bench/bench_encode.py`` compares the speed with tiktoken.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, repeat
from typing import Any

from tinylm.check_values import check_vocab_size
from tinylm.errors import TinylmError
from tinylm.tokenizers.base import FORMAT_NAME, FORMAT_VERSION, Tokenizer
from tinylm.tokenizers.bpe_cache import PieceCache
from tinylm.tokenizers.bpe_pool import encode_in_pool
from tinylm.tokenizers.bpe_specials import (
    BOS_NAMES,
    EOS_NAMES,
    PAD_NAMES,
    SpecialSpec,
    allowed_specials,
    check_specials,
    first_special,
)
from tinylm.tokenizers.bpe_stream import encode_stream
from tinylm.tokenizers.bpe_train import train_bpe
from tinylm.tokenizers.bpe_vocab import check_vocab, encoder_of, merge_ranks, without_specials
from tinylm.tokenizers.pretokenize import (
    pretokenizer,
    replace_surrogates,
    resolve_pattern,
    split_on_specials,
)
from tinylm.workers import resolve_workers

#: Pre-tokens of more bytes than this use the O(n log n) heap merge instead of the
#: simple O(n^2) scan, so a megabyte of spaces cannot stall encoding.
_LONG_PIECE_BYTES = 256
_NO_RANK = 1 << 62
_SINGLE_BYTES = tuple(bytes([b]) for b in range(256))


# -- the model stage: merging one pre-token ------------------------------------------


def _merge(data: bytes, ranks: Mapping[bytes, int], max_rank: int = _NO_RANK) -> list[bytes]:
    """Merge ``data``'s bytes, lowest rank first, using only ranks below ``max_rank``.

    The straightforward loop: keep the rank of every adjacent pair, merge the
    minimum (leftmost on ties, as tiktoken), refresh the two neighbouring pairs;
    stop when the lowest rank left is ``max_rank`` or more (a pair that is not a
    token has rank ``_NO_RANK``). Quadratic, but pre-tokens are short, and the
    byte split, the first pair ranks, ``min`` and ``index`` all run in C: the
    encoder calls this once per distinct pre-token.
    """
    rank_of = ranks.get
    parts = list(map(_SINGLE_BYTES.__getitem__, data))
    pair_ranks = list(map(rank_of, map(bytes.__add__, parts, parts[1:]), repeat(_NO_RANK)))
    while pair_ranks:
        best = min(pair_ranks)
        if best >= max_rank:
            break
        i = pair_ranks.index(best)
        merged = parts[i] + parts[i + 1]
        parts[i] = merged
        del parts[i + 1]
        del pair_ranks[i]
        if i:
            pair_ranks[i - 1] = rank_of(parts[i - 1] + merged, _NO_RANK)
        if i < len(pair_ranks):
            pair_ranks[i] = rank_of(merged + parts[i + 1], _NO_RANK)
    return parts


def _merge_long(data: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """The same merges as :func:`_merge`, in O(n log n) for long pre-tokens.

    Parts are a linked list over start offsets; a heap holds ``(rank, start,
    end)`` of every adjacent pair. Entries go stale when a neighbour merges; an
    entry is still valid iff its left part starts at ``start`` and the part after
    it ends at ``end`` (parts only grow, so the bytes are then unchanged). Heap
    order (rank, then start) is tiktoken's order: lowest rank, leftmost first.
    """
    n = len(data)
    nxt = list(range(1, n + 1))  # end of the part starting at i
    prv = list(range(-1, n - 1))  # start of the part before the one at i
    alive = [True] * n
    heap = [(ranks[data[i : i + 2]], i, i + 2) for i in range(n - 1) if data[i : i + 2] in ranks]
    heapq.heapify(heap)

    def push(start: int, end: int) -> None:
        rank = ranks.get(data[start:end])
        if rank is not None:
            heapq.heappush(heap, (rank, start, end))

    while heap:
        _, start, end = heapq.heappop(heap)
        middle = nxt[start]
        if not alive[start] or middle >= n or nxt[middle] != end:
            continue
        alive[middle] = False
        nxt[start] = end
        if end < n:
            prv[end] = start
            push(start, nxt[end])
        if prv[start] >= 0:
            push(prv[start], end)
    parts = []
    i = 0
    while i < n:
        parts.append(data[i : nxt[i]])
        i = nxt[i]
    return parts


def _piece_encoder(
    encoder: dict[bytes, int], ranks: dict[bytes, int]
) -> Callable[[str], tuple[int, ...]]:
    """The model stage for one pre-token: str -> ids, as a closure over the tables.

    This runs once per *distinct* pre-token (about 120k times for 34 MB of books),
    so it is written for speed: tables bound to locals, and a pre-token that is
    itself a token returns after one lookup; the merging is :func:`_merge`'s.
    """
    find = encoder.get
    token_of = encoder.__getitem__

    def encode_piece(piece: str) -> tuple[int, ...]:
        data = piece.encode("utf-8")
        token = find(data)
        if token is not None:
            return (token,)
        if len(data) > _LONG_PIECE_BYTES:
            return tuple(map(token_of, _merge_long(data, ranks)))
        return tuple(map(token_of, _merge(data, ranks)))

    return encode_piece


class BPETokenizer(Tokenizer):
    """A byte-level BPE tokenizer (pre-tokenizer -> BPE model -> byte decoder).

    Args:
        vocab: id -> token bytes for the ordinary tokens. Every single byte must
            be a token (so nothing is unencodable); ids are non-negative and may
            leave gaps where the source vocabulary has them.
        merges: ``(left, right)`` byte pairs in priority order; merge ``i`` makes
            token ``left + right``, which must be in ``vocab``.
        special_tokens: name -> id, or a list of names given the ids after the
            vocabulary in order. Ids may leave gaps (tiktoken's cl100k does) but
            must not collide with ordinary ids or with each other. A ``vocab``
            entry holding a special token's own id and UTF-8 name (as
            ``train_bpe`` returns it) is taken as that special token.
        pattern: pre-tokenizer regex or a name from
            :data:`tinylm.tokenizers.pretokenize.PATTERNS` (``"gpt2"``, ``"cl100k"``,
            ``"o200k"``).

    ``vocab``, ``merges``, ``special_tokens`` and ``pattern`` are exposed as
    attributes; treat them as read-only (the encoder's tables are built from them).

    The encoders beside this class (:mod:`~tinylm.tokenizers.bpe_stream`,
    :mod:`~tinylm.tokenizers.bpe_pool`) drive the stages one by one through a small
    surface: :attr:`pretokenize` and :attr:`encode_piece` (the pre-tokenizer and
    the cached model stage, plain callables so a loop over pre-tokens pays no
    method call), :meth:`specials_to_cut` and :meth:`encode_with_specials`.
    """

    kind = "bpe"

    def __init__(
        self,
        vocab: Mapping[int, bytes],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: Mapping[str, int] | Sequence[str] | None = None,
        pattern: str = "gpt2",
    ) -> None:
        vocab = check_vocab(without_specials(vocab, special_tokens))
        merges = [(bytes(a), bytes(b)) for a, b in merges]
        encoder = encoder_of(vocab)
        self._setup(vocab, encoder, merge_ranks(merges, encoder), merges, special_tokens, pattern)

    @classmethod
    def from_ranks(
        cls,
        ranks: Mapping[bytes, int],
        special_tokens: Mapping[str, int] | Sequence[str] | None = None,
        pattern: str = "gpt2",
    ) -> BPETokenizer:
        """Build from tiktoken-style mergeable ranks (token bytes -> rank = id).

        A rank table has no merge list: the rank of a token *is* its merge
        priority. The merge list (needed only to save or inspect the tokenizer) is
        recovered on first use of :attr:`merges`, which takes a second or two for
        the 200k-token o200k vocabulary, so loading stays fast.
        """
        by_rank = {rank: token for token, rank in ranks.items()}
        if len(by_rank) != len(ranks):
            raise TinylmError("two tokens share a rank; the rank table is damaged")
        vocab = check_vocab(by_rank)
        encoder = encoder_of(vocab)
        self = cls.__new__(cls)
        self._setup(vocab, encoder, encoder, None, special_tokens, pattern)
        return self

    @classmethod
    def train(
        cls,
        corpus: Any,
        vocab_size: int,
        special_tokens: Sequence[str] = (),
        pattern: str = "gpt2",
        *,
        workers: int | None = None,
        progress: bool = True,
    ) -> BPETokenizer:
        """Learn a vocabulary from ``corpus``; see :func:`tinylm.tokenizers.bpe_train.train_bpe`."""
        vocab, merges, special_ids = train_bpe(
            corpus, vocab_size, special_tokens, pattern, workers=workers, progress=progress
        )
        return cls(vocab, merges, special_ids, pattern)

    def _setup(
        self,
        vocab: dict[int, bytes],
        encoder: dict[bytes, int],
        ranks: dict[bytes, int],
        merges: list[tuple[bytes, bytes]] | None,
        special_tokens: Mapping[str, int] | Sequence[str] | None,
        pattern: str,
    ) -> None:
        """Shared tail of both constructors: specials, pattern and the encoder's tables."""
        self.vocab = vocab
        self._merges = merges
        self.special_tokens = check_specials(special_tokens, vocab)
        self.pattern = resolve_pattern(pattern)
        #: bytes -> id, the model's output table (lowest id wins for duplicate bytes).
        self._encoder = encoder
        #: bytes -> merge priority of every token a merge can make.
        self._ranks = ranks
        self._decoder: dict[int, bytes] = dict(vocab)
        for name, i in self.special_tokens.items():
            self._decoder[i] = name.encode("utf-8")
        self._special_names = frozenset(self.special_tokens)
        self._vocab_size = max(self._decoder) + 1
        check_vocab_size("this tokenizer's vocab_size (largest id + 1)", self._vocab_size)
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        """(Re)build what is derived and not pickled: compiled regex and the cache."""
        #: The pre-tokenizer stage: text -> pre-tokens (the regex's ``findall``).
        self.pretokenize: Callable[[str], list[str]] = pretokenizer(self.pattern)
        self._cache = PieceCache(_piece_encoder(self._encoder, self._ranks))
        #: The model stage for one pre-token, cached: str -> tuple of ids. Text with
        #: lone surrogates raises ``UnicodeEncodeError`` (callers fix it first).
        self.encode_piece: Callable[[str], tuple[int, ...]] = self._cache.__getitem__

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("pretokenize", "_cache", "encode_piece"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_runtime()

    # -- the Tokenizer surface -------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """One more than the largest id; ids in gaps (cl100k has some) are unused."""
        return self._vocab_size

    def defined_ids(self) -> list[int] | None:
        """The ids in use when the id range has gaps (see the base class)."""
        return None if len(self._decoder) >= self._vocab_size else sorted(self._decoder)

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """Merges in priority order; recovered from the ranks for tiktoken files."""
        if self._merges is None:
            self._merges = _recover_merges(self._ranks)
        return self._merges

    @property
    def bos_id(self) -> int | None:
        return first_special(self.special_tokens, BOS_NAMES)

    @property
    def eos_id(self) -> int | None:
        return first_special(self.special_tokens, EOS_NAMES)

    @property
    def pad_id(self) -> int | None:
        return first_special(self.special_tokens, PAD_NAMES)

    def with_special_tokens(self, names: Sequence[str]) -> BPETokenizer:
        """This tokenizer plus the special tokens ``names`` it lacks, from ``vocab_size`` up.

        Every id it had keeps its meaning (vocabulary, merges and the specials it
        already has are shared), so a model trained with it still reads them.
        """
        new = [name for name in dict.fromkeys(names) if name not in self.special_tokens]
        specials = dict(self.special_tokens)
        specials.update({name: self.vocab_size + k for k, name in enumerate(new)})
        grown = type(self).__new__(type(self))
        grown._setup(self.vocab, self._encoder, self._ranks, self._merges, specials, self.pattern)
        return grown

    # -- encoding --------------------------------------------------------------

    def encode(
        self,
        text: str,
        allowed_special: SpecialSpec = (),
        disallowed_special: SpecialSpec = "all",
    ) -> list[int]:
        """Encode ``text``; special tokens only where ``allowed_special`` permits.

        ``allowed_special`` is ``"all"`` or a set of names to recognise as special
        tokens (longest name first where they overlap). Any name in
        ``disallowed_special`` (default ``"all"``: every special token not allowed)
        that appears in the text raises :class:`TinylmError`; pass
        ``disallowed_special=()`` to encode such text as ordinary text instead.
        """
        return self.encode_with_specials(
            text, self.specials_to_cut(text, allowed_special, disallowed_special)
        )

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` ignoring special tokens entirely (the fastest path)."""
        try:
            return list(chain.from_iterable(map(self.encode_piece, self.pretokenize(text))))
        except UnicodeEncodeError:
            # Only lone surrogates cannot be UTF-8 encoded; fix them like tiktoken.
            text = replace_surrogates(text)
            return list(chain.from_iterable(map(self.encode_piece, self.pretokenize(text))))

    def encode_document(self, text: str) -> list[int]:
        """``[BOS] + ids + [EOS]``; special-token text inside a document is ordinary text.

        The boundaries come from the tokens added here, never from the text, so a
        document that happens to contain ``<|endoftext|>`` cannot fake one.
        """
        head = [] if self.bos_id is None else [self.bos_id]
        tail = [] if self.eos_id is None else [self.eos_id]
        return head + self.encode_ordinary(text) + tail

    def encode_with_specials(self, text: str, specials: frozenset[str]) -> list[int]:
        """Pre-tokenizer stage 1: cut out ``specials``, encode the rest.

        ``specials`` comes from :meth:`specials_to_cut`, which did the checking; the
        pool and the stream call the two apart (checks in the parent, encoding in a
        worker; checks per block).
        """
        if not specials:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for piece, is_special in split_on_specials(text, specials):
            if is_special:
                ids.append(self.special_tokens[piece])
            else:
                ids.extend(self.encode_ordinary(piece))
        return ids

    def encode_batch(
        self,
        texts: Iterable[str],
        allowed_special: SpecialSpec = (),
        disallowed_special: SpecialSpec = "all",
        *,
        workers: int | None = None,
    ) -> list[list[int]]:
        """Encode many texts; large batches are spread over ``workers`` processes.

        ``workers`` defaults to the CPUs this process may use; when a pool pays
        (large batches, Linux, no other threads) is said in
        :mod:`tinylm.tokenizers.bpe_pool`. The ids equal :meth:`encode`'s.
        """
        texts = list(texts)
        workers = resolve_workers(workers)
        allowed = [self.specials_to_cut(t, allowed_special, disallowed_special) for t in texts]
        return encode_in_pool(self, list(zip(texts, allowed, strict=True)), workers)

    def encode_iterable(
        self,
        iterable: Iterable[str],
        allowed_special: SpecialSpec = (),
        disallowed_special: SpecialSpec = "all",
    ) -> Iterator[int]:
        """Yield the ids of the concatenation of ``iterable``'s strings, lazily.

        Meant for files larger than memory (``encode_iterable(open(path))``); the
        ids equal ``encode("".join(iterable))``, and memory stays bounded (see
        :mod:`tinylm.tokenizers.bpe_stream`).
        """
        return encode_stream(self, iterable, allowed_special, disallowed_special)

    def specials_to_cut(
        self, text: str, allowed_special: SpecialSpec, disallowed_special: SpecialSpec
    ) -> frozenset[str]:
        """The special tokens to cut out of ``text``; raise if it holds a disallowed one."""
        return allowed_specials(text, self._special_names, allowed_special, disallowed_special)

    # -- decoding --------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of ``ids`` (special tokens as their UTF-8 names).

        ``ids`` may be any iterable of ints, or a NumPy array or torch tensor
        (anything with ``tolist()``).
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        try:
            return b"".join(map(self._decoder.__getitem__, ids))
        except KeyError as exc:
            gaps = ", with gaps" if len(self._decoder) < self.vocab_size else ""
            raise TinylmError(
                f"token id {exc.args[0]!r} is not in this tokenizer (ids are "
                f"0..{self.vocab_size - 1}{gaps}); were these ids made by another tokenizer?"
            ) from None
        except TypeError:
            raise TinylmError(
                f"ids must be an iterable of integers, not {type(ids).__name__}"
            ) from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of ``ids``; bytes that are not valid UTF-8 become U+FFFD by default."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one id (a special token's UTF-8 name)."""
        return self.decode_bytes([token_id])

    def token_byte_counts(self) -> list[int]:
        """Each ordinary token's byte length; special tokens and holes count 0."""
        counts = [0] * self.vocab_size
        for i, token in self.vocab.items():
            counts[i] = len(token)
        return counts

    # -- saving ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fields of a BPE tokenizer file (the envelope is added by ``save``)."""
        return {
            "pattern": self.pattern,
            "special_tokens": dict(self.special_tokens),
            "vocab": {str(i): token_to_json(token) for i, token in self.vocab.items()},
            "merges": [[token_to_json(a), token_to_json(b)] for a, b in self.merges],
        }

    def to_json(self) -> str:
        """The file text: ``json.dumps`` of envelope + fields, one token or merge per line.

        ``json.dumps(indent=...)`` would spread every merge pair over four lines, so
        the two long sections are laid out by hand; the parsed result is identical.
        """
        body: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "type": "bpe"}
        body.update(self.to_dict())

        def dump(value: Any) -> str:
            return json.dumps(value, ensure_ascii=False)

        lines = ["{"]
        for key, value in body.items():
            if key == "vocab":
                entries = [f"  {dump(i)}: {dump(token)}" for i, token in value.items()]
                section = "{\n" + ",\n".join(entries) + "\n }" if entries else "{}"
            elif key == "merges":
                entries = [f"  {dump(pair)}" for pair in value]
                section = "[\n" + ",\n".join(entries) + "\n ]" if entries else "[]"
            else:
                section = dump(value)
            lines.append(f" {dump(key)}: {section},")
        lines[-1] = lines[-1].rstrip(",")
        return "\n".join(lines) + "\n}\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BPETokenizer:
        """Build from a parsed tinylm file, checking every field (the layout is in
        :mod:`tinylm.tokenizers.formats`, which dispatches every kind of file)."""
        pattern = data.get("pattern")
        if not isinstance(pattern, str):
            raise TinylmError("BPE tokenizer file lacks its 'pattern' string; the file is corrupt")
        vocab_field = data.get("vocab")
        if not isinstance(vocab_field, dict):
            raise TinylmError("BPE tokenizer file lacks its 'vocab' object; the file is corrupt")
        merges_field = data.get("merges")
        if not isinstance(merges_field, list):
            raise TinylmError("BPE tokenizer file lacks its 'merges' list; the file is corrupt")
        specials = data.get("special_tokens", {})
        if not isinstance(specials, dict):
            raise TinylmError("'special_tokens' must be an object of name -> id")
        vocab = {}
        for key, value in vocab_field.items():
            if not (key.isascii() and key.isdigit()):
                raise TinylmError(f"vocab key {key!r} is not a decimal id")
            vocab[int(key)] = token_from_json(value)
        merges = []
        for number, pair in enumerate(merges_field):
            if not isinstance(pair, list) or len(pair) != 2:
                raise TinylmError(f"merge {number} is {pair!r}, not a [left, right] pair")
            merges.append((token_from_json(pair[0]), token_from_json(pair[1])))
        return cls(vocab, merges, specials, pattern)

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, special_tokens={len(self.special_tokens)})"
        )


# -- the file format's tokens and the merges a rank table implies ---------------


def token_to_json(token: bytes) -> str | dict[str, str]:
    """A token as written in tinylm files: text if valid UTF-8, else ``{"hex": ...}``."""
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": token.hex()}


def token_from_json(value: Any) -> bytes:
    """Inverse of :func:`token_to_json`."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"hex"} and isinstance(value["hex"], str):
        try:
            return bytes.fromhex(value["hex"])
        except ValueError:
            pass
    raise TinylmError(f"token {value!r} is neither a string nor {{'hex': '<hex digits>'}}")


def _recover_merges(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Rebuild the merge list that a rank table implies.

    A token of rank ``r`` was made by merging two tokens that BPE forms from its
    bytes using only lower ranks, so running BPE restricted to ranks ``< r`` on
    the token's bytes leaves exactly those two parts. Tokens for which it does
    not (none in GPT-2, cl100k or o200k; an empty token in Whisper's file) cannot
    come out of BPE and get no merge.
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = _merge(token, ranks, rank)
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
    return merges
