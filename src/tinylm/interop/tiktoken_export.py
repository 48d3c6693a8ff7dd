"""A BPE tokenizer as a tiktoken rank file: one ``base64(token bytes) rank`` line per token.

tiktoken has no merge list: it merges the adjacent pair whose concatenation has
the lowest *rank*, and a token's rank is its id. tinylm merges by the same rule
with the merge order as the rank, so the file is exact when the ids of mergeable
tokens rise in merge order, as they do for every tokenizer tinylm trains and
every tiktoken file it loads. Otherwise (hand-built vocabularies) the export is
refused rather than written to encode differently.

The rank file holds neither the pre-tokenizer regex nor the special tokens;
``tiktoken.json`` beside it does, so the encoding can be rebuilt exactly::

    spec = json.load(open("tiktoken.json"))
    enc = tiktoken.Encoding(spec["name"], pat_str=spec["pat_str"],
                            mergeable_ranks=tiktoken.load.load_tiktoken_bpe("tokenizer.tiktoken"),
                            special_tokens=spec["special_tokens"])
"""

from __future__ import annotations

import base64
from typing import Any

from tinylm.errors import SettingError, TinylmError
from tinylm.interop.hf_tokenizer import first_merges
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.bpe import BPETokenizer

RANKS_FILE = "tokenizer.tiktoken"
SPEC_FILE = "tiktoken.json"


def tiktoken_files(tokenizer: Tokenizer, name: str = "tinylm") -> tuple[str, dict[str, Any]]:
    """``(rank file text, tiktoken.json dict)`` for a BPE tokenizer."""
    if not isinstance(tokenizer, BPETokenizer):
        raise SettingError(
            f"a {tokenizer.kind} tokenizer cannot be written as a tiktoken file: tiktoken "
            "holds byte-level BPE only (the hf export format writes the char tokenizer)",
            setting="format",
            value="hf",
        )
    _check_rank_order(tokenizer)
    lines = [
        f"{base64.b64encode(token).decode('ascii')} {i}"
        for i, token in sorted(tokenizer.vocab.items())
    ]
    spec = {
        "name": name,
        "pat_str": tokenizer.pattern,
        "special_tokens": dict(tokenizer.special_tokens),
    }
    return "\n".join(lines) + "\n", spec


def _check_rank_order(tokenizer: BPETokenizer) -> None:
    """Every multi-byte token is made by a merge, with ids rising in merge order."""
    first = first_merges(tokenizer)
    id_of: dict[bytes, int] = {}
    for i, token in sorted(tokenizer.vocab.items()):
        if token in id_of:
            raise TinylmError(
                f"token id {i} repeats the bytes {token!r} of a lower id; tiktoken gives each "
                "token one rank, so this vocabulary cannot be written as a tiktoken file"
            )
        id_of[token] = i
        if len(token) > 1 and token not in first:
            raise TinylmError(
                f"token id {i} ({token!r}) is made by no merge; tiktoken would merge into it "
                "where tinylm does not, so this vocabulary cannot be written as a tiktoken file"
            )
    ids = [id_of[token] for token in first]
    if any(a >= b for a, b in zip(ids, ids[1:], strict=False)):
        raise SettingError(
            "this tokenizer's ids do not rise in merge order; tiktoken ranks tokens by id, "
            "so it would merge in another order (the hf export format keeps the merge order)",
            setting="format",
            value="hf",
        )
