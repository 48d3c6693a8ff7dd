"""What reaches the terminal: control characters are shown, never obeyed (issue 23, item 5)."""

from __future__ import annotations

import subprocess
import sys
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from tinylm.terminal import printable


def _obeyed(text: str, one_line: bool) -> list[str]:
    """Characters a terminal would act on: controls (but newline and tab) and surrogates."""
    keep = set() if one_line else {"\n", "\t"}
    return [c for c in text if c not in keep and unicodedata.category(c) in ("Cc", "Cs")]


@given(st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0xFFFF)))
def test_nothing_a_terminal_obeys_is_left(text):
    assert _obeyed(printable(text), one_line=False) == []
    one = printable(text, one_line=True)
    assert _obeyed(one, one_line=True) == [] and "\n" not in one


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_printable_text_passes_unchanged(text):
    assert printable(text) == text == printable(text, one_line=True)


def test_each_escape_is_the_one_python_would_type():
    assert printable("\x1b]0;PWNED\x07\x1b[2J") == "\\x1b]0;PWNED\\x07\\x1b[2J"
    assert printable("a\nb\tc\rd") == "a\nb\tc\\rd"
    assert printable("a\nb\tc", one_line=True) == "a\\nb\\tc"
    assert printable("\x85\x9f\x7f") == "\\x85\\x9f\\x7f"  # C1 controls and DEL
    assert printable("\udcff\udcfe") == "\\xff\\xfe"  # bytes surrogateescape kept
    assert printable("\ud800") == "\\ud800"
    assert printable("é 日本 🙂") == "é 日本 🙂"


def _tinylm(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tinylm.cli.main", *argv], capture_output=True, timeout=120
    )


def test_an_escape_sequence_in_an_argument_is_shown_in_the_error_not_obeyed(tmp_path):
    proc = _tinylm("sample", str(tmp_path / "\x1b]0;PWNED\x07\x1b[2J"))
    assert proc.returncode == 2
    assert b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr
    assert b"\\x1b]0;PWNED\\x07\\x1b[2J" in proc.stderr


def test_a_newline_in_an_argument_cannot_forge_a_second_line(tmp_path):
    proc = _tinylm("sample", str(tmp_path / "r\ntinylm: all good"))
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinylm: error: ")
    assert "r\\ntinylm: all good" in lines[0]


def test_a_usage_error_is_escaped_too():
    proc = _tinylm("tokenize", "--no-such-flag\x1b[2J")
    assert proc.returncode == 2 and b"\x1b" not in proc.stderr
    assert len(proc.stderr.decode().splitlines()) == 1
