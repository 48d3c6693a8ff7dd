"""Streaming BPE: ``encode_iterable`` over text larger than memory, with exact ids.

Text is gathered into blocks of about :data:`_STREAM_BLOCK_CHARS` characters and
each block is encoded except its tail, which may hold a pre-token or special token
that goes on in the next block; so the ids equal ``encode("".join(iterable))``.
Memory stays bounded by the block size plus the longest pre-token.

Where a block may be cut: every pre-token and special token emitted ends at least
a margin before the block's end, so more text could not change it. A pre-token's
regex match looks at most a few characters past its end (3, for o200k's
contractions) unless it runs to the block's end, and the margin is at least twice
the longest special token, so a special token that might be the prefix of a
longer one is kept back too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING

from tinylm.tokenizers.pretokenize import split_on_specials, valid_unicode

if TYPE_CHECKING:
    from tinylm.tokenizers.bpe import BPETokenizer
    from tinylm.tokenizers.bpe_specials import SpecialSpec

#: Characters gathered before a block is encoded.
_STREAM_BLOCK_CHARS = 1 << 16
#: Characters kept back at the end of a block: the built-in patterns look at most
#: 3 characters past a pre-token, and a special token may straddle the block edge.
_STREAM_MARGIN_CHARS = 64


def encode_stream(
    tokenizer: BPETokenizer,
    iterable: Iterable[str],
    allowed_special: SpecialSpec,
    disallowed_special: SpecialSpec,
) -> Iterator[int]:
    """The ids of the concatenation of ``iterable``'s strings, yielded block by block."""
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
        block = valid_unicode(block[: len(block) - len(held)])
        ids, tail = _encode_block(tokenizer, block, allowed_special, disallowed_special)
        tail += held
        yield from ids
    yield from tokenizer.encode(tail + "".join(pending), allowed_special, disallowed_special)


def _encode_block(
    tokenizer: BPETokenizer,
    block: str,
    allowed_special: SpecialSpec,
    disallowed_special: SpecialSpec,
) -> tuple[list[int], str]:
    """Encode ``block`` up to a safe cut (see the module docstring); return ids and the rest."""
    allowed = tokenizer.specials_to_cut(block, allowed_special, disallowed_special)
    longest_special = max(map(len, tokenizer.special_tokens), default=0)
    boundary = len(block) - max(_STREAM_MARGIN_CHARS, 2 * longest_special)
    ids: list[int] = []
    start = 0
    for piece, is_special in split_on_specials(block, allowed):
        end = start + len(piece)
        if end <= boundary:
            if is_special:
                ids.append(tokenizer.special_tokens[piece])
            else:
                ids.extend(tokenizer.encode_ordinary(piece))
            start = end
            continue
        if is_special:
            return ids, block[start:]
        words = tokenizer.pretokenize(piece)
        taken = 0
        for word in words:
            if start + len(word) > boundary:
                break
            start += len(word)
            taken += 1
        ids.extend(chain.from_iterable(map(tokenizer.encode_piece, words[:taken])))
        return ids, block[start:]
    return ids, ""
