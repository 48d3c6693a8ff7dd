"""Seeing tokenization: token boundaries, ids, counts, and side-by-side comparisons.

Everything here returns strings or numbers, so a notebook can display them and the
CLI can print them; nothing writes to the terminal itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from tinylm.terminal import printable
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.bpe import BPETokenizer

#: The seed's comparison examples: a common phrase, a word famous for its letters,
#: and a word with a prefix that subword tokenizers may or may not split off.
SEED_EXAMPLES = ("Hello world", "strawberry", "unhappy")

# Background colours that keep black text readable, cycled token by token.
_COLOURS = (43, 46, 45, 42, 44, 41)
_VISIBLE = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
#: How a space is drawn where it stands alone (U+2423 OPEN BOX).
VISIBLE_SPACE = "\u2423"


def encode_shown(tokenizer: Tokenizer, text: str) -> list[int]:
    """Encode text as it is shown to a user: special tokens written in it are special.

    Library ``encode`` refuses special-token text unless told (as tiktoken does), which
    protects training data; someone looking at how text tokenizes wants to see
    ``<|endoftext|>`` become its one id instead.
    """
    if isinstance(tokenizer, BPETokenizer) and tokenizer.special_tokens:
        return tokenizer.encode(text, allowed_special="all")
    return tokenizer.encode(text)


def token_pieces(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    """The text of each token on its own.

    A byte-level token may hold only part of a character (an emoji is four bytes,
    often split over several tokens); such bytes are shown as ``\\xNN`` escapes, so a
    reader sees exactly which bytes each token holds instead of a row of U+FFFD.
    """
    decode_bytes = getattr(tokenizer, "decode_bytes", None)
    if decode_bytes is not None:
        return [decode_bytes([i]).decode("utf-8", errors="backslashreplace") for i in ids]
    show = getattr(tokenizer, "token_text", None)
    return [show(i) if show else tokenizer.decode([i]) for i in ids]


def visible(piece: str, spaces: bool = False) -> str:
    """A token's text with its whitespace made visible: ``\\n``, ``\\t``, ``\\r``.

    With ``spaces=True`` a space is drawn as ``␣`` too, for places where a token
    stands alone (a plot's tick label, a table cell) and a leading space, which
    tells " the" from "the", would otherwise be invisible.
    """
    shown = printable("".join(_VISIBLE.get(ch, ch) for ch in piece))
    return shown.replace(" ", VISIBLE_SPACE) if spaces else shown


def render_tokens(pieces: Sequence[str], color: bool = False) -> str:
    """Join pieces with visible boundaries: coloured backgrounds, or ``[brackets]``."""
    if color:
        return "".join(
            f"\x1b[30;{_COLOURS[i % len(_COLOURS)]}m{visible(p)}\x1b[0m"
            for i, p in enumerate(pieces)
        )
    return "".join(f"[{visible(p)}]" for p in pieces)


def chars_per_token(tokenizer: Tokenizer, documents: Iterable[str]) -> float:
    """Characters per token over a corpus: higher means shorter sequences for the model."""
    chars = tokens = 0
    for doc in documents:
        chars += len(doc)
        tokens += len(encode_shown(tokenizer, doc))
    return chars / tokens if tokens else float("nan")


def compare_table(tokenizers: Mapping[str, Tokenizer], texts: Sequence[str]) -> str:
    """A markdown table of token counts: one row per text, one column per tokenizer."""
    names = list(tokenizers)
    header = "| text | " + " | ".join(names) + " |"
    rule = "|---|" + "---:|" * len(names)
    rows = [header, rule]
    for text in texts:
        counts = [str(len(encode_shown(tokenizers[name], text))) for name in names]
        rows.append(f"| {visible(text)!s} | " + " | ".join(counts) + " |")
    return "\n".join(rows)
