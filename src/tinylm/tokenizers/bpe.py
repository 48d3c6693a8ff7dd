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

Special tokens. ``special_tokens`` maps names such as ``"<|endoftext|>"`` to ids
outside the byte-level vocabulary. As in tiktoken, :meth:`BPETokenizer.encode`
recognises them only when ``allowed_special`` lets it, longest name first; by
default text that *contains* a special token's name raises :class:`TinylmError`,
because silently encoding a user-typed ``<|endoftext|>`` as a document boundary
is a prompt-injection hazard, and silently encoding it as plain text is a
surprise for whoever meant the boundary.

Document boundaries. :attr:`bos_id` is the first present of ``<|bos|>``,
``<|startoftext|>``, ``<s>``, then ``<|endoftext|>``; :attr:`eos_id` the first
of ``<|eos|>``, ``<|endoftext|>``, ``</s>``; :attr:`pad_id` is ``<|pad|>``. With
GPT-2's single ``<|endoftext|>`` that token therefore both opens and closes a
document, so a stream of documents reads ``<eot> doc <eot> <eot> doc <eot>``.

Lone surrogates. Python strings may hold lone surrogates (``"\\ud800"``), which
are not Unicode characters and have no UTF-8 form. Like tiktoken, encoding first
joins valid surrogate *pairs* into their character and replaces lone ones with
U+FFFD, so ``decode(encode(s)) == s`` for every string without lone surrogates
and no string makes encoding fail.

Speed. Natural text repeats the same pre-tokens over and over, so the model
stage is cached per pre-token string (a bounded dict whose ``__missing__`` runs
BPE), and the common case -- a pre-token that is itself one token -- skips BPE
with one dict lookup. With the cache the whole encode loop runs inside C
(``findall``, ``map`` over the cache, ``itertools.chain``). The remaining big
cost, the pre-tokenizer regex, runs on the standard library's ``re`` (about
twice as fast as ``regex``) for the built-in patterns; see
:func:`tinylm.tokenizers.pretokenize.pretokenizer`. ``bench/bench_encode.py``
compares with tiktoken.
"""

from __future__ import annotations

import heapq
import multiprocessing
import sys
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import chain, repeat
from typing import Any, Literal

from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.pretokenize import pretokenizer, resolve_pattern, split_on_specials
from tinylm.workers import resolve_workers

#: Special-token names that mark document boundaries and padding, in preference order.
BOS_NAMES = ("<|bos|>", "<|startoftext|>", "<s>", "<|endoftext|>")
EOS_NAMES = ("<|eos|>", "<|endoftext|>", "</s>")
PAD_NAMES = ("<|pad|>",)

#: Cached pre-tokens. Distinct pre-tokens grow slowly with text size (34 MB of
#: English books hold ~120k), so this covers real corpora at a few tens of MB.
CACHE_SIZE = 1 << 18
#: Longer pre-tokens (long digit or whitespace runs) are rare and would make the
#: cache's memory unbounded, so they are not cached.
_MAX_CACHED_CHARS = 128
#: Pre-tokens of more bytes than this use the O(n log n) heap merge instead of the
#: simple O(n^2) scan, so a megabyte of spaces cannot stall encoding.
_LONG_PIECE_BYTES = 256
#: ``encode_iterable`` gathers this many characters before encoding a block.
_STREAM_BLOCK_CHARS = 1 << 16
#: Characters kept back at the end of a block: the built-in patterns look at most
#: 3 characters past a pre-token, and a special token may straddle the block edge.
_STREAM_MARGIN_CHARS = 64
#: ``encode_batch`` gives each worker process jobs of at least this many characters
#: (so a smaller batch stays in-process): below it, a process costs more than it saves.
_MIN_JOB_CHARS = 1 << 19

_NO_RANK = 1 << 62
#: array typecode for ids: unsigned and at least 4 bytes.
_ID_TYPECODE = "I" if array("I").itemsize >= 4 else "L"
_SINGLE_BYTES = tuple(bytes([b]) for b in range(256))

SpecialSpec = Literal["all"] | Iterable[str]


class _PieceCache(dict):
    """Pre-token string -> tuple of ids; a miss runs the model and stores the result.

    Subclassing ``dict`` with ``__missing__`` keeps hits in C: ``map(cache.__getitem__,
    pieces)`` never enters Python for a cached pre-token. When full, the cache is
    cleared rather than evicted one by one (an LRU would cost Python code on every
    hit); the working set refills it within a few kilobytes of text.
    """

    __slots__ = ("_compute", "_limit")

    def __init__(self, compute: Callable[[str], tuple[int, ...]], limit: int) -> None:
        super().__init__()
        self._compute = compute
        self._limit = limit

    def __missing__(self, piece: str) -> tuple[int, ...]:
        ids = self._compute(piece)
        if len(piece) <= _MAX_CACHED_CHARS:
            if len(self) >= self._limit:
                self.clear()
            self[piece] = ids
        return ids


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
    """

    kind = "bpe"

    def __init__(
        self,
        vocab: Mapping[int, bytes],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: Mapping[str, int] | Sequence[str] | None = None,
        pattern: str = "gpt2",
    ) -> None:
        vocab = _check_vocab(_without_specials(vocab, special_tokens))
        merges = [(bytes(a), bytes(b)) for a, b in merges]
        encoder = _encoder_of(vocab)
        ranks: dict[bytes, int] = {}
        for rank, (left, right) in enumerate(merges):
            if left not in encoder or right not in encoder:
                missing = left if left not in encoder else right
                raise TinylmError(
                    f"merge {rank} ({left!r}, {right!r}) uses {missing!r}, which is not in "
                    "the vocabulary; the tokenizer data is inconsistent"
                )
            merged = left + right
            if merged not in encoder:
                raise TinylmError(
                    f"merge {rank} ({left!r}, {right!r}) makes {merged!r}, which is not in "
                    "the vocabulary; the tokenizer data is inconsistent"
                )
            ranks.setdefault(merged, rank)
        self._setup(vocab, encoder, ranks, merges, special_tokens, pattern)

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
        vocab = _check_vocab(by_rank)
        encoder = _encoder_of(vocab)
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
        from tinylm.tokenizers.bpe_train import train_bpe

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
        self.special_tokens = _check_specials(special_tokens, vocab)
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
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        """(Re)build what is derived and not pickled: compiled regex and the cache."""
        self._findall = pretokenizer(self.pattern)
        self._cache = _PieceCache(_piece_encoder(self._encoder, self._ranks), CACHE_SIZE)
        self._lookup = self._cache.__getitem__

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_findall", "_cache", "_lookup"):
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

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """Merges in priority order; recovered from the ranks for tiktoken files."""
        if self._merges is None:
            self._merges = _recover_merges(self._ranks)
        return self._merges

    @property
    def bos_id(self) -> int | None:
        return self._first_special(BOS_NAMES)

    @property
    def eos_id(self) -> int | None:
        return self._first_special(EOS_NAMES)

    @property
    def pad_id(self) -> int | None:
        return self._first_special(PAD_NAMES)

    def _first_special(self, names: Sequence[str]) -> int | None:
        for name in names:
            if name in self.special_tokens:
                return self.special_tokens[name]
        return None

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
        allowed = self._check_specials_in_text(text, allowed_special, disallowed_special)
        return self._encode(text, allowed)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` ignoring special tokens entirely (the fastest path)."""
        try:
            return list(chain.from_iterable(map(self._lookup, self._findall(text))))
        except UnicodeEncodeError:
            # Only lone surrogates cannot be UTF-8 encoded; fix them like tiktoken.
            text = _replace_surrogates(text)
            return list(chain.from_iterable(map(self._lookup, self._findall(text))))

    def encode_document(self, text: str) -> list[int]:
        """``[BOS] + ids + [EOS]``; special-token text inside a document is ordinary text.

        The boundaries come from the tokens added here, never from the text, so a
        document that happens to contain ``<|endoftext|>`` cannot fake one.
        """
        head = [] if self.bos_id is None else [self.bos_id]
        tail = [] if self.eos_id is None else [self.eos_id]
        return head + self.encode_ordinary(text) + tail

    def _encode(self, text: str, allowed: frozenset[str]) -> list[int]:
        """Pre-tokenizer stage 1: cut out allowed special tokens, encode the rest."""
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for piece, is_special in split_on_specials(text, allowed):
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

        Processes, not threads: the pre-tokenizer runs on ``re``, which holds the
        GIL, so threads would take turns (measured: no faster than one thread).
        Worker processes are forked, so they start in milliseconds with this
        tokenizer and its cache already in memory, and ids come back as packed
        arrays. Batches under ~512k characters (where a pool costs more than it
        saves), ``workers=1``, platforms other than Linux, and processes running
        other threads (forking those can deadlock) are encoded in this process
        instead. ``workers`` defaults to the number of CPUs this process may use.
        """
        texts = list(texts)
        workers = resolve_workers(workers)
        allowed = [
            self._check_specials_in_text(text, allowed_special, disallowed_special)
            for text in texts
        ]
        items = list(zip(texts, allowed, strict=True))
        jobs = _split_jobs(items, workers) if workers > 1 and _can_fork() else [items]
        if len(jobs) < 2:
            return [self._encode(text, allowed_here) for text, allowed_here in items]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            min(workers, len(jobs)), mp_context=context, initializer=_adopt, initargs=(self,)
        ) as pool:
            packed = list(pool.map(_encode_job, jobs))
        return [ids.tolist() for job in packed for ids in job]

    def encode_iterable(
        self,
        iterable: Iterable[str],
        allowed_special: SpecialSpec = (),
        disallowed_special: SpecialSpec = "all",
    ) -> Iterator[int]:
        """Yield the ids of the concatenation of ``iterable``'s strings, lazily.

        Meant for files larger than memory (``encode_iterable(open(path))``): text
        is gathered into blocks of ~64k characters and each block is encoded
        except its tail, which may hold a pre-token or special token that goes on
        in the next block; so the ids equal ``encode("".join(iterable))``. Memory
        stays bounded by the block size plus the longest pre-token.
        """
        pending: list[str] = []
        size = 0
        tail = ""
        for chunk in iterable:
            pending.append(chunk)
            size += len(chunk)
            if size < _STREAM_BLOCK_CHARS:
                continue
            block = tail + "".join(pending)
            pending, size = [], 0
            # A surrogate pair split between chunks must meet before it is fixed.
            held = block[-1] if block and "\ud800" <= block[-1] <= "\udbff" else ""
            block = _valid_unicode(block[: len(block) - len(held)])
            ids, tail = self._encode_block(block, allowed_special, disallowed_special)
            tail += held
            yield from ids
        yield from self.encode(tail + "".join(pending), allowed_special, disallowed_special)

    def _encode_block(
        self, block: str, allowed_special: SpecialSpec, disallowed_special: SpecialSpec
    ) -> tuple[list[int], str]:
        """Encode ``block`` up to a safe cut; return the ids and the text kept back.

        Every pre-token and special token emitted ends at least a margin before
        the block's end, so more text could not change it: a pre-token's regex
        match looks at most a few characters past its end (3, for o200k's
        contractions) unless it runs to the block's end, and the margin is at
        least twice the longest special token, so a special token that might be
        the prefix of a longer one is kept back too.
        """
        allowed = self._check_specials_in_text(block, allowed_special, disallowed_special)
        longest_special = max(map(len, self._special_names), default=0)
        boundary = len(block) - max(_STREAM_MARGIN_CHARS, 2 * longest_special)
        ids: list[int] = []
        start = 0
        for piece, is_special in split_on_specials(block, allowed):
            end = start + len(piece)
            if end <= boundary:
                if is_special:
                    ids.append(self.special_tokens[piece])
                else:
                    ids.extend(self.encode_ordinary(piece))
                start = end
                continue
            if is_special:
                return ids, block[start:]
            words = self._findall(piece)
            taken = 0
            for word in words:
                if start + len(word) > boundary:
                    break
                start += len(word)
                taken += 1
            ids.extend(chain.from_iterable(map(self._lookup, words[:taken])))
            return ids, block[start:]
        return ids, ""

    def _check_specials_in_text(
        self, text: str, allowed_special: SpecialSpec, disallowed_special: SpecialSpec
    ) -> frozenset[str]:
        """Raise if ``text`` holds a disallowed special token; return the allowed set."""
        allowed = self._special_set(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = self._special_names - allowed
        else:
            disallowed = self._special_set(disallowed_special, "disallowed_special")
        # str.__contains__ is a fast C scan; a regex over all names would be slower.
        found = [(text.find(name), name) for name in disallowed if name in text]
        if found:
            name = min(found)[1]
            raise TinylmError(
                f"text contains the special token {name!r}; pass allowed_special={{{name!r}}} "
                "to encode it as that token, or disallowed_special=() to encode it as text"
            )
        return allowed

    def _special_set(self, spec: SpecialSpec, argument: str) -> frozenset[str]:
        """``"all"`` or a collection of names -> a checked frozenset of known names."""
        if isinstance(spec, str):
            if spec == "all":
                return self._special_names
            raise TinylmError(
                f"{argument} must be 'all' or a set of special-token names, not the string "
                f"{spec!r}; write {argument}={{{spec!r}}}"
            )
        names = frozenset(spec)
        unknown = names - self._special_names
        if unknown:
            known = ", ".join(sorted(self._special_names)) or "none"
            raise TinylmError(
                f"{argument} names unknown special token(s) {sorted(unknown)}; "
                f"this tokenizer has: {known}"
            )
        return names

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

    # -- saving ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        from tinylm.tokenizers.formats import bpe_to_dict

        return bpe_to_dict(self)

    def to_json(self) -> str:
        from tinylm.tokenizers.formats import bpe_to_json

        return bpe_to_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BPETokenizer:
        from tinylm.tokenizers.formats import bpe_from_dict

        return bpe_from_dict(data)

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, special_tokens={len(self.special_tokens)})"
        )


# -- validation ------------------------------------------------------------------


def _check_vocab(vocab: Mapping[int, bytes]) -> dict[int, bytes]:
    """Non-negative integer ids, bytes values, and every single byte present.

    Ids may leave gaps: tiktoken's p50k_base skips 50256, the id of its
    ``<|endoftext|>``. A gap id is simply never produced and cannot be decoded.
    """
    checked: dict[int, bytes] = {}
    for i, token in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TinylmError(f"vocabulary id {i!r} is not a non-negative integer")
        if not isinstance(token, (bytes, bytearray)):
            raise TinylmError(f"vocabulary entry {i} is {type(token).__name__}, not bytes")
        checked[i] = bytes(token)
    present = {token[0] for token in checked.values() if len(token) == 1}
    if len(present) < 256:
        missing = min(set(range(256)) - present)
        raise TinylmError(
            f"vocabulary lacks the single byte {bytes([missing])!r}; a byte-level BPE "
            "vocabulary needs all 256 bytes so that any text can be encoded"
        )
    return dict(sorted(checked.items()))


def _without_specials(
    vocab: Mapping[int, bytes], specials: Mapping[str, int] | Sequence[str] | None
) -> Mapping[int, bytes]:
    """``vocab`` minus the entries that merely repeat a special token (id and name)."""
    if not isinstance(specials, Mapping):
        return vocab
    own = {i: name for name, i in specials.items() if isinstance(name, str)}
    return {
        i: token
        for i, token in vocab.items()
        if not (i in own and isinstance(token, bytes) and token == own[i].encode("utf-8"))
    }


def _encoder_of(vocab: dict[int, bytes]) -> dict[bytes, int]:
    encoder: dict[bytes, int] = {}
    for i, token in vocab.items():
        encoder.setdefault(token, i)
    return encoder


def _check_specials(
    specials: Mapping[str, int] | Sequence[str] | None, vocab: dict[int, bytes]
) -> dict[str, int]:
    """Name -> id, with list names numbered after the vocabulary; no collisions."""
    if specials is None:
        return {}
    if isinstance(specials, str):
        raise TinylmError(f"special_tokens must be a list or dict of names, not {specials!r}")
    if not isinstance(specials, Mapping):
        names = list(specials)
        if len(set(names)) != len(names):
            raise TinylmError(f"special token names repeat: {names}")
        first = max(vocab, default=-1) + 1
        specials = {name: first + k for k, name in enumerate(names)}
    checked: dict[str, int] = {}
    owner: dict[int, str] = {}
    for name, i in specials.items():
        if not isinstance(name, str) or not name:
            raise TinylmError(f"special token name {name!r} must be a non-empty string")
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TinylmError(f"special token {name!r} has id {i!r}, not a non-negative integer")
        if i in vocab:
            raise TinylmError(
                f"special token {name!r} has id {i}, which an ordinary token already uses; "
                f"give special tokens ids from {max(vocab) + 1} up"
            )
        if i in owner:
            raise TinylmError(f"special tokens {owner[i]!r} and {name!r} share id {i}")
        owner[i] = name
        checked[name] = i
    return checked


# -- the BPE merge loops ---------------------------------------------------------


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


# -- helpers ---------------------------------------------------------------------


def _valid_unicode(text: str) -> str:
    """``text``, with surrogates fixed if it has any (the UTF-8 check runs in C)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _replace_surrogates(text)
    return text


def _replace_surrogates(text: str) -> str:
    """Join surrogate pairs into characters and turn lone surrogates into U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _split_jobs(
    items: list[tuple[str, frozenset[str]]], workers: int
) -> list[list[tuple[str, frozenset[str]]]]:
    """Cut a batch, in order, into jobs of similar size: about 4 per worker, so one
    slow job does not leave the other workers idle, but none under _MIN_JOB_CHARS."""
    total = sum(len(text) for text, _ in items)
    target = max(_MIN_JOB_CHARS, total // (4 * workers) + 1)
    jobs: list[list[tuple[str, frozenset[str]]]] = [[]]
    size = 0
    for item in items:
        if size >= target:
            jobs.append([])
            size = 0
        jobs[-1].append(item)
        size += len(item[0])
    return jobs


def _can_fork() -> bool:
    """Forking is fast and keeps the tokenizer's memory, but safe only without threads."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


#: The tokenizer a worker process encodes with (set by ``_adopt`` when it starts).
_WORKER_TOKENIZER: BPETokenizer | None = None


def _adopt(tokenizer: BPETokenizer) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer


def _encode_job(job: list[tuple[str, frozenset[str]]]) -> list[array]:
    """Encode one job in a worker; packed arrays pickle far faster than lists of ints."""
    assert _WORKER_TOKENIZER is not None
    return [array(_ID_TYPECODE, _WORKER_TOKENIZER._encode(text, allowed)) for text, allowed in job]
