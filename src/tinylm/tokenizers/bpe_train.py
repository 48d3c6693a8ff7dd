"""Train a byte-level BPE vocabulary: which pairs of tokens to merge, and in which order.

Training starts from the 256 single bytes and repeatedly merges the most frequent
pair of adjacent tokens into a new token, until the vocabulary is full:

1. The corpus is pre-tokenized (see ``pretokenize.py``) and only the *distinct*
   pre-tokens are kept, with their counts (``pretoken_counts.py`` streams and
   parallelises this). Pairs are counted inside pre-tokens only, so no merge ever
   crosses a pre-token, a document boundary or a special token; special tokens in
   the text are cut out and never counted.
2. Each merge picks the pair with the highest count. **Ties are broken by the
   byte strings: the lexicographically greater pair** ``(left_bytes, right_bytes)``
   wins, i.e. the maximum of ``(count, (left_bytes, right_bytes))``. Comparing
   bytes rather than ids makes the result independent of id order, and so of
   anything but the corpus, the vocabulary size and the pattern. (Should two
   merges ever build tokens with equal bytes, equal byte pairs go by lower ids.)
3. After a merge only the pre-tokens that contain the merged pair are updated,
   and with them only the counts of the pairs next to the merge sites. An index
   pair -> pre-tokens finds those pre-tokens, and a heap with lazy invalidation
   finds the best pair (an entry whose count is out of date is re-pushed with
   the current count when it surfaces).

Training stops early, with fewer merges than asked for, when no pair occurs any
more (every pre-token is a single token); the vocabulary is then smaller than
``vocab_size``.

Why the pre-tokens are strings of one character per token: a pre-token ``[104,
101, 108]`` is kept as ``"\\x68\\x65\\x6c"`` (``chr(id)`` per token). Then "does it
contain the pair" is ``pair in word``, applying a merge is ``word.split(pair)`` /
``new.join(...)``, and a pair is a two-character string: all of it runs in C
rather than as Python loops over lists of ids. Ids go up to ``0x10FFFF``, far
above any useful vocabulary.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from operator import add

from tinylm.errors import TinylmError
from tinylm.progress import progress_bar
from tinylm.tokenizers.pretoken_counts import Corpus, count_pretokens
from tinylm.tokenizers.pretokenize import resolve_pattern
from tinylm.workers import resolve_workers

#: The largest vocabulary the one-character-per-token representation allows.
MAX_VOCAB_SIZE = 0x110000


def train_bpe(
    corpus: Corpus,
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    pattern: str = "gpt2",
    *,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], dict[str, int]]:
    """Learn byte-level BPE merges from ``corpus``; return ``(vocab, merges, special_ids)``.

    ``corpus`` is text (a ``str`` is always text, never a path), a file path
    (``os.PathLike``), or an iterable of texts and paths. Each text or file is a
    document, or several separated by special tokens: nothing is merged across
    documents, nor across occurrences of the ``special_tokens`` inside them (those
    are cut out and not counted). Files are streamed in chunks and must be UTF-8.

    ``vocab`` maps ids to bytes: ids 0-255 are the single bytes, merge ``i``
    creates id ``256 + i`` (its left and right bytes joined), and the special
    tokens take the last ids in the order given, so ``vocab_size`` counts them.
    ``merges`` is the ordered list of ``(left_bytes, right_bytes)``. Fewer merges
    than ``vocab_size`` allows are returned when no pair is left to merge.

    ``pattern`` is a pre-tokenizer name (``gpt2``, ``cl100k``, ``o200k``...) or a
    regex. ``workers`` processes pre-tokenize large corpora (default: the CPUs this
    process may use; small corpora are always done in-process). ``progress`` shows progress bars on
    stderr when it is a terminal (``tinylm.progress``); ``False`` keeps training silent.
    """
    specials = _check_special_tokens(special_tokens)
    num_merges = _check_vocab_size(vocab_size, len(specials))
    workers = resolve_workers(workers)
    regex_pattern = resolve_pattern(pattern)

    word_counts, nbytes = count_pretokens(
        corpus, regex_pattern, specials, workers=workers, progress=progress
    )
    if nbytes == 0:
        raise TinylmError("the training corpus is empty; give some text or a non-empty file")
    if not word_counts:  # the text was special tokens only: nothing to learn from
        raise TinylmError(
            "the training corpus holds only special tokens, no text to learn merges from; "
            "give some ordinary text"
        )
    merges = learn_merges(word_counts, num_merges, progress=progress)

    vocab = {i: bytes([i]) for i in range(256)}
    for left, right in merges:
        vocab[len(vocab)] = left + right
    special_ids = {}
    for token in specials:
        special_ids[token] = len(vocab)
        vocab[len(vocab)] = token.encode("utf-8")
    return vocab, merges, special_ids


def learn_merges(
    word_counts: Mapping[str, int], num_merges: int, *, progress: bool = False
) -> list[tuple[bytes, bytes]]:
    """The first ``num_merges`` merges for pre-tokens counted as ``word_counts``."""
    table = PairTable(word_counts)
    merges: list[tuple[bytes, bytes]] = []
    with progress_bar(progress, total=num_merges, desc="merging", unit="merge") as bar:
        for _ in range(num_merges):
            pair = table.pop_best()
            if pair is None:  # no pair occurs any more: stop early
                break
            merges.append(table.merge(pair))
            bar.update()
    return merges


def _descending_key(token: bytes) -> str:
    """A string whose ascending order is the *descending* order of byte strings.

    ``heapq`` is a min-heap; to pop the lexicographically greatest pair first, each
    byte ``b`` becomes ``chr(255 - b)``, and a terminator ``chr(256)``, above every
    byte, makes a prefix sort after its extensions (``b"a" < b"ab"``, so its key must
    be greater). Concatenating the keys of left and right then orders pairs as
    tuples ``(left, right)``, in reverse, with plain C string comparison.
    """
    return "".join(chr(255 - b) for b in token) + "\u0100"


def _add_pair(
    counts: dict[str, int], where: dict[str, list[int]], pair: str, index: int, freq: int
) -> None:
    """Count ``freq`` more of ``pair``, found in word ``index``; list that word once."""
    counts[pair] = counts.get(pair, 0) + freq
    indices = where.get(pair)
    if indices is None:
        where[pair] = [index]
    elif indices[-1] != index:  # words are visited in order, so a repeat is the last
        indices.append(index)


class PairTable:
    """The distinct pre-tokens as token strings, their pair counts, index and heap."""

    def __init__(self, word_counts: Mapping[str, int]) -> None:
        self.tokens: list[bytes] = [bytes([b]) for b in range(256)]
        self.keys: list[str] = [_descending_key(t) for t in self.tokens]
        # Each pre-token as one character per byte (latin-1 maps byte b to chr(b)).
        # Single-byte pre-tokens hold no pair and never change, so they are dropped.
        self.words: list[str] = []
        self.freqs: list[int] = []
        for word, freq in word_counts.items():
            chars = word.encode("utf-8").decode("latin-1")
            if len(chars) > 1:
                self.words.append(chars)
                self.freqs.append(freq)
        self.counts: dict[str, int] = {}
        #: pair -> indices of words that contain it, or once did (stale entries are
        #: skipped when used, which is cheaper than removing them).
        self.where: dict[str, list[int]] = {}
        self._count_all_pairs()
        self.heap = [(-n, self._key(pair), pair) for pair, n in self.counts.items()]
        heapq.heapify(self.heap)

    def _count_all_pairs(self) -> None:
        counts, where = self.counts, self.where
        for index, (word, freq) in enumerate(zip(self.words, self.freqs, strict=True)):
            for pair in map(add, word, word[1:]):
                _add_pair(counts, where, pair, index, freq)

    def _key(self, pair: str) -> str:
        return self.keys[ord(pair[0])] + self.keys[ord(pair[1])]

    def pop_best(self) -> str | None:
        """Remove and return the most frequent pair (ties: greatest bytes), or None."""
        heap, counts = self.heap, self.counts
        while heap:
            negative, key, pair = heapq.heappop(heap)
            current = counts.get(pair, 0)
            if current == -negative:
                return pair
            if current > 0:  # counts only fall after a pair is created: re-queue
                heapq.heappush(heap, (-current, key, pair))
        return None

    def merge(self, pair: str) -> tuple[bytes, bytes]:
        """Merge ``pair`` everywhere into a new token; return its (left, right) bytes.

        For each site ``...x a b y...`` -> ``...x c y...`` the pairs ``xa`` and
        ``by`` lose the word's count and ``xc``, ``cy`` gain it; where two sites
        touch (``a b a b`` -> ``c c``) the pair between them, ``ba``, becomes ``cc``.
        Every gained pair contains the new token ``c``, so it is new: it gets one
        heap entry and one index list, filled in here and never grown again.
        """
        a, b = pair
        new = chr(len(self.tokens))
        left, right = self.tokens[ord(a)], self.tokens[ord(b)]
        self.tokens.append(left + right)
        self.keys.append(_descending_key(left + right))

        counts, words, freqs = self.counts, self.words, self.freqs
        gained: dict[str, int] = {}
        gained_where: dict[str, list[int]] = {}

        ba = b + a
        for index in self.where.pop(pair):
            word = words[index]
            if pair not in word:  # stale index entry
                continue
            freq = freqs[index]
            parts = word.split(pair)
            for site in range(len(parts) - 1):
                before, after = parts[site], parts[site + 1]
                if before:
                    counts[before[-1] + a] -= freq
                    _add_pair(gained, gained_where, before[-1] + new, index, freq)
                elif site:  # touches the previous site: "b a" becomes "c c"
                    counts[ba] -= freq
                    _add_pair(gained, gained_where, new + new, index, freq)
                if after:
                    counts[b + after[0]] -= freq
                    _add_pair(gained, gained_where, new + after[0], index, freq)
            words[index] = new.join(parts)

        del counts[pair]
        counts.update(gained)
        self.where.update(gained_where)
        for new_pair, freq in gained.items():
            heapq.heappush(self.heap, (-freq, self._key(new_pair), new_pair))
        return left, right


# -- argument checks -----------------------------------------------------------


def _check_special_tokens(special_tokens: Sequence[str]) -> tuple[str, ...]:
    if isinstance(special_tokens, str):
        raise TinylmError(
            f"special_tokens must be a list of strings, got the string {special_tokens!r}; "
            f"write [{special_tokens!r}]"
        )
    specials = tuple(special_tokens)
    seen: set[str] = set()
    for token in specials:
        if not isinstance(token, str) or not token:
            raise TinylmError(f"special tokens must be non-empty strings, got {token!r}")
        if token in seen:
            raise TinylmError(f"duplicate special token {token!r}; list each special token once")
        seen.add(token)
    return specials


def _check_vocab_size(vocab_size: int, num_specials: int) -> int:
    """Return the number of merges ``vocab_size`` leaves room for."""
    minimum = 256 + num_specials
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TinylmError(f"vocab_size must be an integer, got {vocab_size!r}")
    if vocab_size < minimum:
        raise TinylmError(
            f"vocab_size {vocab_size} is too small: the minimum is {minimum} "
            f"(256 byte tokens + {num_specials} special tokens)"
        )
    if vocab_size - num_specials > MAX_VOCAB_SIZE:
        raise TinylmError(f"vocab_size {vocab_size} is too large; the maximum is {MAX_VOCAB_SIZE}")
    return vocab_size - minimum
