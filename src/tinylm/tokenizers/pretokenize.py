"""The pre-tokenizer: split text into chunks that BPE merges never cross.

Byte-level BPE works on bytes, but if it could merge across any boundary it would
learn tokens like ``"dog."`` and ``"dog!"`` separately, wasting vocabulary. GPT-2
therefore first splits text with a regex into *pre-tokens* (words with their
leading space, runs of digits, runs of punctuation, whitespace) and only merges
inside each one. Special tokens (``<|endoftext|>`` ...) are cut out before that,
so no merge ever spans a special token either.

The named patterns are the exact strings tiktoken uses, so that tinylm's ids equal
tiktoken's on the same vocabulary.

Speed. The regex scan is the largest cost of both encoding and counting a training
corpus, so every caller splits through :func:`pretokenizer`, which runs the
built-in patterns on the standard library's ``re`` (about twice as fast as the
``regex`` module, and exact: see :mod:`tinylm.tokenizers.pretokenize_fast`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

import regex

from tinylm.errors import TinylmError
from tinylm.tokenizers.pretokenize_fast import re_findall

GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

#: Pattern names accepted wherever a pattern is asked for. Anything else is taken
#: as a custom regex.
PATTERNS: dict[str, str] = {
    "gpt2": GPT2_PATTERN,
    "r50k": GPT2_PATTERN,
    "r50k_base": GPT2_PATTERN,
    "p50k_base": GPT2_PATTERN,
    "cl100k": CL100K_PATTERN,
    "cl100k_base": CL100K_PATTERN,
    "gpt4": CL100K_PATTERN,
    "o200k": O200K_PATTERN,
    "o200k_base": O200K_PATTERN,
}


def resolve_pattern(pattern: str) -> str:
    """Return the regex for a pattern name, or check and return a custom regex."""
    if pattern in PATTERNS:
        return PATTERNS[pattern]
    if not pattern:
        raise TinylmError(
            f"empty pre-tokenization pattern; use one of {sorted(set(PATTERNS))} or a regex"
        )
    try:
        compile_pattern(pattern)
    except regex.error as exc:
        raise TinylmError(
            f"pattern {pattern!r} is neither a known name ({', '.join(sorted(PATTERNS))}) "
            f"nor a valid regex: {exc}"
        ) from None
    return pattern


def pattern_name(pattern: str) -> str | None:
    """The canonical short name of a regex, if it is one of the built-in ones."""
    for name in ("gpt2", "cl100k", "o200k"):
        if PATTERNS[name] == pattern:
            return name
    return None


@lru_cache(maxsize=32)
def compile_pattern(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


@lru_cache(maxsize=32)
def pretokenizer(pattern: str) -> Callable[[str], list[str]]:
    """The fastest exact splitter for the regex ``pattern``: text -> its pre-tokens.

    It always returns what ``regex.findall(pattern, text)`` would. For the built-in
    patterns it runs on ``re``; custom patterns keep ``regex``, because the fast
    engine's handling of astral characters is proven only for the built-in ones.
    Building the fast engine takes some tens of milliseconds, hence the cache: each
    process builds it once per pattern, and worker processes are sent only the
    pattern string. (Resolve names such as ``"gpt2"`` with :func:`resolve_pattern`.)
    """
    fast = re_findall(pattern) if pattern_name(pattern) else None
    if fast is None:
        return compile_pattern(pattern).findall
    return fast


def pretokenize(text: str, pattern: str) -> list[str]:
    """Split ``text`` (which must hold no special tokens) into pre-tokens."""
    return pretokenizer(pattern)(text)


@lru_cache(maxsize=32)
def _special_regex(specials: tuple[str, ...]) -> regex.Pattern:
    # Longest first, so that "<|a|><|b|>" style overlaps resolve to the longest match,
    # as tiktoken does.
    ordered = sorted(specials, key=len, reverse=True)
    return regex.compile("|".join(regex.escape(s) for s in ordered))


def split_on_specials(text: str, specials: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """Yield ``(piece, is_special)`` in order; ordinary pieces may be empty-free.

    Special tokens are matched left to right, longest first at each position.
    """
    specials = tuple(sorted(set(specials)))
    if not specials:
        if text:
            yield text, False
        return
    start = 0
    for match in _special_regex(specials).finditer(text):
        if match.start() > start:
            yield text[start : match.start()], False
        yield match.group(), True
        start = match.end()
    if start < len(text):
        yield text[start:], False
