"""The pre-tokenizer: split text into chunks that BPE merges never cross.

Byte-level BPE works on bytes, but if it could merge across any boundary it would
learn tokens like ``"dog."`` and ``"dog!"`` separately, wasting vocabulary. GPT-2
therefore first splits text with a regex into *pre-tokens* (words with their
leading space, runs of digits, runs of punctuation, whitespace) and only merges
inside each one. Special tokens (``<|endoftext|>`` ...) are cut out before that,
so no merge ever spans a special token either.

The named patterns are the exact strings tiktoken uses, so that tinylm's ids equal
tiktoken's on the same vocabulary. A custom regex need not match every character:
text between its matches becomes pre-tokens of its own, so nothing is ever lost.

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
#: as a custom regex, except a bare word (a mistyped name, refused).
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


_LOOKS_LIKE_A_NAME = regex.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def resolve_pattern(pattern: str) -> str:
    """Return the regex for a pattern name, or check and return a custom regex."""
    if pattern in PATTERNS:
        return PATTERNS[pattern]
    if not pattern:
        raise TinylmError(
            f"empty pre-tokenization pattern; use one of {sorted(set(PATTERNS))} or a regex"
        )
    if _LOOKS_LIKE_A_NAME.fullmatch(pattern):
        # As a regex it would match only that literal word: surely a mistyped name.
        raise TinylmError(
            f"unknown pattern name {pattern!r}; use one of {', '.join(sorted(PATTERNS))}, "
            f"or a regex (to split on that literal text, write (?:{pattern}))"
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
        if pattern_name(pattern):
            return compile_pattern(pattern).findall
        return _covering_splitter(compile_pattern(pattern))
    return fast


def _covering_splitter(compiled: regex.Pattern) -> Callable[[str], list[str]]:
    """Split on a custom regex without losing text: its matches *and* the gaps between.

    The built-in patterns match every character, so ``findall`` loses nothing with
    them; a custom regex may not (``[a-z]+`` skips spaces, a capturing group makes
    ``findall`` return only the group). Here each whole match is a pre-token and so
    is each stretch of text between matches (as Hugging Face's ``Split`` with
    ``behavior="isolated"`` does), and empty matches are dropped, so the pieces
    always join back into the text and ``decode(encode(s)) == s`` holds for any
    pattern.
    """

    def split(text: str) -> list[str]:
        pieces: list[str] = []
        done = 0
        for match in compiled.finditer(text):
            start, end = match.span()
            if start == end:
                continue
            if start > done:
                pieces.append(text[done:start])
            pieces.append(text[start:end])
            done = end
        if done < len(text):
            pieces.append(text[done:])
        return pieces

    return split


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


def replace_surrogates(text: str) -> str:
    """Join surrogate pairs into characters and turn lone surrogates into U+FFFD.

    Python strings may hold lone surrogates (``"\\ud800"``), which have no UTF-8
    form; like tiktoken, tinylm fixes them before splitting rather than failing.
    """
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def valid_unicode(text: str) -> str:
    """``text``, with surrogates fixed if it has any (the UTF-8 check runs in C)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return replace_surrogates(text)
    return text
