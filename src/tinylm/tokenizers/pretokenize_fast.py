"""A faster engine for the built-in pre-tokenizer patterns: the standard library's ``re``.

Why. The pre-tokenizer regex is the largest cost of encoding text and of counting
a training corpus's pre-tokens, and ``re`` scans the built-in patterns (gpt2,
cl100k, o200k) about twice as fast as the ``regex`` module they are written for.
``re`` lacks ``\\p{...}`` classes, so :func:`re_translation` rewrites a pattern
with each class spelled out as explicit character ranges.

Why it is exact. The ranges are computed by asking ``regex`` itself which
characters each class matches, so both engines agree on every such character
whatever their Unicode versions, and the rest of the syntax the built-in patterns
use means the same in both engines. The ranges are limited to the Basic
Multilingual Plane (below U+10000): ``re`` compiles BMP-only sets into a lookup
table, but checks sets with astral ranges range by range, which is far slower.
So the translation is exact on text without astral characters, and
``tests/tokenizers/test_pretokenize.py`` checks it on every BMP character.

The astral fallback. Astral characters (emoji, ...) are rare, so the text around
each one -- a short stretch, cut where cutting changes no pre-token (see
:func:`_astral_windows`) -- is left to ``regex``, and ``re`` does the rest.

:func:`tinylm.tokenizers.pretokenize.pretokenizer` decides when to use this engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import regex

#: Any character outside the Basic Multilingual Plane.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def re_findall(pattern: str) -> Callable[[str], list[str]] | None:
    """``regex.findall`` for ``pattern``, but running on ``re`` wherever that is exact.

    ``None`` when :func:`re_translation` cannot translate ``pattern``. The astral
    fallback is exact only for patterns like the built-in ones (see
    :func:`_astral_windows`), so use this for those alone.
    """
    fast = re_translation(pattern)
    if fast is None:
        return None
    fast_findall = fast.findall
    slow_findall = regex.compile(pattern).findall
    has_astral = _ASTRAL.search

    def findall(text: str) -> list[str]:
        if text.isascii() or not has_astral(text):
            return fast_findall(text)
        pieces: list[str] = []
        done = 0
        for start, end in _astral_windows(text):
            pieces += fast_findall(text[done:start])
            pieces += slow_findall(text[start:end])
            done = end
        pieces += fast_findall(text[done:])
        return pieces

    return findall


def _astral_windows(text: str) -> list[tuple[int, int]]:
    """Stretches of ``text`` that hold all its astral characters, cut at safe places.

    A safe place is a space that follows a non-space character. In the built-in
    patterns no pre-token holds a non-space followed by a space, nothing looks
    behind, and a scan that reaches such a space stops there exactly as it
    would at the end of the text; so pre-tokenizing the two sides separately
    gives the same pre-tokens as the whole. ``str.isspace`` is used for "space",
    which is a superset of the patterns' ``\\s``, so a cut it allows is safe.
    """
    windows: list[tuple[int, int]] = []
    for match in _ASTRAL.finditer(text):
        at = match.start()
        if windows and at < windows[-1][1]:
            continue
        start = text.rfind(" ", 0, at)
        while start > 0 and text[start - 1].isspace():
            start = text.rfind(" ", 0, start)
        end = text.find(" ", at + 1)
        while end > 0 and text[end - 1].isspace():
            end = text.find(" ", end + 1)
        start = max(start, 0)
        end = len(text) if end < 0 else end
        if windows and start <= windows[-1][1]:
            start = windows.pop()[0]
        windows.append((start, end))
    return windows


@lru_cache(maxsize=16)
def re_translation(pattern: str) -> re.Pattern | None:
    """``pattern`` rewritten for ``re``, exact on text without astral characters.

    Each ``\\p{...}``, ``\\s`` and ``\\S`` becomes an explicit set of BMP ranges
    (:func:`_bmp_ranges`). The rest of the syntax the built-in patterns use
    (alternation, possessive quantifiers, ``(?i:...)``, lookahead, ``$``) means the
    same in both engines. Anything else, or a Python without possessive
    quantifiers (< 3.11), gives ``None`` and the caller keeps ``regex``.
    """
    out: list[str] = []
    groups: list[bool] = []  # for each open group: is it case-insensitive?
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            escape = pattern[i + 1 : i + 2]
            if escape in ("p", "s", "S"):
                if any(groups):  # case folding could widen an explicit set
                    return None
                if escape == "p":
                    end = pattern.find("}", i)
                    if pattern[i + 2 : i + 3] != "{" or end < 0:
                        return None
                    ranges, i = _bmp_ranges(pattern[i : end + 1]), end + 1
                elif escape == "S" and in_class:
                    return None
                else:
                    ranges, i = _bmp_ranges("\\s"), i + 2
                negate = "^" if escape == "S" else ""
                out.append(ranges if in_class else f"[{negate}{ranges}]")
                continue
            if escape.isalnum() and escape not in "rnt":
                return None  # \d, \w, \b, \x.., \N{...}: not translated
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if char == "[" or pattern[i - 1 : i + 1] in ("[]", "^]"):
                return None  # nested sets, POSIX classes, a literal ] first
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            if pattern.startswith("(?", i) and pattern[i + 2 : i + 3].isalpha():
                if not pattern.startswith("(?i:", i):
                    return None  # other inline flags
                groups.append(True)
            else:
                groups.append(False)
        elif char == ")" and groups:
            groups.pop()
        out.append(char)
        i += 1
    try:
        return re.compile("".join(out))
    except re.error:
        return None


@lru_cache(maxsize=32)
def _bmp_ranges(item: str) -> str:
    """The BMP characters that ``regex`` matches with ``item``, as set ranges.

    Matched against all BMP characters in code point order, ``(?:item)+`` finds
    exactly the runs of consecutive characters in the class, i.e. its ranges.
    """
    ranges = []
    for run in regex.finditer(f"(?:{item})+", _bmp_chars()):
        first, last = run.start(), run.end() - 1
        ranges.append(f"\\u{first:04x}" + (f"-\\u{last:04x}" if last > first else ""))
    return "".join(ranges)


@lru_cache(maxsize=1)
def _bmp_chars() -> str:
    return "".join(map(chr, range(0x10000)))
