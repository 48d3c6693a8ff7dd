"""What reaches the terminal: control characters are shown, never obeyed (issue 23, item 5)."""

from __future__ import annotations

import subprocess
import sys
import unicodedata

import pytest
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


ESCAPES = "\x1b]0;PWNED\x07\x1b[2J"


@pytest.fixture(scope="module")
def escaping_run(tmp_path_factory):
    """A run whose tokenizer knows ESC and BEL: its prompts and samples may hold them."""
    import torch

    from tinylm.checkpoint import save_checkpoint
    from tinylm.model import GPT, ModelConfig
    from tinylm.tokenizers.char import CharTokenizer

    tokenizer = CharTokenizer.train(f"plain text {ESCAPES} more text\n")
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_embd=16, n_head=2
    )
    model = GPT(config)
    with torch.no_grad():  # make the model love ESC and BEL, so samples are full of them
        model.lm_head.weight[tokenizer.encode("\x1b\x07")] += 5.0
    run = tmp_path_factory.mktemp("escaping") / "run"
    save_checkpoint(run / "ckpt-000001", model, None, 1, tokenizer=tokenizer)
    return run


@pytest.mark.parametrize("num", ["1", "2"])
def test_a_prompt_and_samples_holding_escapes_are_shown_not_obeyed(escaping_run, num):
    # `tinylm sample RUN --prompt $'\e]0;PWNED\a\e[2J'` set the window title and cleared
    # the screen; so could a sample of a model trained on such text.
    proc = _tinylm(
        "sample", str(escaping_run), "--prompt", ESCAPES, "--max-tokens", "40", "--num", num,
        "--seed", "3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout
    assert proc.stdout.startswith(b"\\x1b]0;PWNED\\x07\\x1b[2J")
    assert proc.stdout.count(b"\\x1b") > 2  # the samples' own ESCs too, escaped


def test_tokenize_shows_escapes_in_tokens_not_obeys_them():
    proc = _tinylm("tokenize", "-t", "char", "--color", "never", f"a{ESCAPES}b")
    assert proc.returncode == 0, proc.stderr
    assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout
