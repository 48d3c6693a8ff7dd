"""Text on its way to a terminal or a picture: control characters shown, never obeyed.

Much of what tinylm prints came from someone else: a prompt, a corpus, a special
token's name, a run folder's name, a file named in an error. A terminal obeys the
control characters in such text: ``ESC [ 2 J`` clears the screen, ``ESC ] 0 ; ...
BEL`` sets the window title, and a newline inside an argument turns a one-line
error into two, the second forged (``tinylm: all good``). Every such text passes
through :func:`printable` on its way out, which writes each control character as
the escape a Python reader would type (``\\x1b``, ``\\x07``), so it is seen, not
obeyed.

Bytes that were not UTF-8 reach Python as lone surrogates (``surrogateescape``:
byte ``0xff`` is ``\\udcff``); they are shown as ``\\xff``, the byte itself. A
picture's font could not draw them at all (matplotlib refuses the string).

Standard library only: the tokenizers, the trainer's progress and the CLI all use it.
"""

from __future__ import annotations

import re

#: C0 controls (but newline and tab), DEL, the C1 controls, and lone surrogates.
_UNSAFE_IN_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
#: ... and newline and tab as well, for text that must stay on one line.
_UNSAFE_IN_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"  # any other lone surrogate


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` with every control character written as an escape (``\\x1b``).

    Newlines and tabs are kept unless ``one_line`` (an error message, a table
    cell, a name), where they become ``\\n`` and ``\\t`` too.
    """
    pattern = _UNSAFE_IN_A_LINE if one_line else _UNSAFE_IN_LINES
    return pattern.sub(_escape, text)
