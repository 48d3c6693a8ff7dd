"""The tables a byte-level BPE tokenizer is built from, and what each must satisfy.

A vocabulary maps ids to token bytes and must hold all 256 single bytes (so any
text can be encoded); merges are byte pairs in priority order, each making a
token of the vocabulary; Files
come from users and the internet, so every table is checked here, once, when a
:class:`tinylm.tokenizers.bpe.BPETokenizer` is built, and a broken one is named
in one line instead of failing later mid-encode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tinylm.errors import TinylmError


def check_vocab(vocab: Mapping[int, bytes]) -> dict[int, bytes]:
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


def without_specials(
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


def encoder_of(vocab: dict[int, bytes]) -> dict[bytes, int]:
    """bytes -> id, the model's output table (the lowest id wins for duplicate bytes)."""
    encoder: dict[bytes, int] = {}
    for i, token in vocab.items():
        encoder.setdefault(token, i)
    return encoder


def merge_ranks(
    merges: Sequence[tuple[bytes, bytes]], encoder: Mapping[bytes, int]
) -> dict[bytes, int]:
    """bytes -> priority of every token a merge makes; each merge must use and make tokens."""
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
    return ranks
