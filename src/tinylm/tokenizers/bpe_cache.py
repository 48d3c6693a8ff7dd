"""The BPE encoder's cache: each distinct pre-token is merged once, then looked up.

Natural text repeats the same pre-tokens over and over (34 MB of English books
hold about 120k distinct ones), so the model stage -- the merge loop in
:mod:`tinylm.tokenizers.bpe` -- is run once per distinct pre-token and its ids
kept. With the cache, the whole encode loop of a cached text runs inside C
(``findall``, ``map`` over the cache, ``itertools.chain``). Caching never
changes an id: a pre-token's ids do not depend on its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable

#: Cached pre-tokens. Distinct pre-tokens grow slowly with text size, so this
#: covers real corpora at a few tens of MB.
CACHE_SIZE = 1 << 18
#: Longer pre-tokens (long digit or whitespace runs) are rare and would make the
#: cache's memory unbounded, so they are not cached.
_MAX_CACHED_CHARS = 128


class PieceCache(dict):
    """Pre-token string -> tuple of ids; a miss runs the model and stores the result.

    Subclassing ``dict`` with ``__missing__`` keeps hits in C: ``map(cache.__getitem__,
    pieces)`` never enters Python for a cached pre-token. When full, the cache is
    cleared rather than evicted one by one (an LRU would cost Python code on every
    hit); the working set refills it within a few kilobytes of text.
    """

    __slots__ = ("_compute", "_limit")

    def __init__(self, compute: Callable[[str], tuple[int, ...]], limit: int | None = None) -> None:
        super().__init__()
        self._compute = compute
        self._limit = CACHE_SIZE if limit is None else limit

    def __missing__(self, piece: str) -> tuple[int, ...]:
        ids = self._compute(piece)
        if len(piece) <= _MAX_CACHED_CHARS:
            if len(self) >= self._limit:
                self.clear()
            self[piece] = ids
        return ids
