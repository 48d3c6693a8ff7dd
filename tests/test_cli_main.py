"""The ``tinylm`` entry point: usage errors and user errors are one line, exit 2."""

from __future__ import annotations

import errno
import io
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tinylm.cli.main import main


def test_usage_error_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tokenize", "--color", "sometimes"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice" in err[0] and "--help" in err[0]


def test_user_error_is_printed_once_under_torchrun(monkeypatch, capsys, tmp_path):
    args = ["tokenize", "-t", str(tmp_path / "missing.json"), "hi"]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(args) == 2
    assert capsys.readouterr().err == ""  # rank 1 stays quiet
    monkeypatch.setenv("RANK", "0")
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("tinylm: error: ")


def test_a_stray_rank_without_world_size_still_prints_the_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["sample", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("tinylm: error: ")
    monkeypatch.setenv("WORLD_SIZE", "2")  # a real torchrun rank 1: quiet
    assert main(["sample", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == ""


def test_subcommand_usage_errors_start_like_every_other_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--steps", "abc"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinylm: error: argument --steps"), err
    assert "tinylm train --help" in err[0]


class FullStream(io.TextIOBase):
    """A standard output on a full disk, as ``> /dev/full`` gives."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_standard_output_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", FullStream())
    monkeypatch.setattr("tinylm.cli.main._silence_stdout", lambda: None)  # keep pytest's fd
    assert main(["tokenize", "-t", "char", "--corpus", __file__, "hello"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tinylm: error: cannot write the output: no space left on the device; "
                   "write it somewhere else"]  # fmt: skip


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_dev_full_in_a_real_process_has_no_traceback(tmp_path):
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "tinylm.cli.main", "tokenize", "-t", "char", "--corpus",
             __file__, "hello"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "tinylm: error: cannot write the output: no space left on the device; "
        "write it somewhere else"
    ]


def test_a_second_ctrl_c_while_the_first_is_reported_still_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    interrupts = iter([KeyboardInterrupt])  # the second Ctrl-C lands on the report

    def say(line):
        raise next(interrupts)

    monkeypatch.setattr("tinylm.cli.tokenizer_cmds.run_tokenize", interrupted)
    monkeypatch.setattr("tinylm.cli.main._say", say)
    before = signal.getsignal(signal.SIGINT)
    assert main(["tokenize", "hi"]) == 130
    assert signal.getsignal(signal.SIGINT) is before  # main leaves Ctrl-C as it found it


def test_a_library_warning_is_one_line_without_source(monkeypatch, capsys):
    def warns(args):
        warnings.warn("prompt has 99 tokens but the context window is 8", stacklevel=1)
        return 0

    monkeypatch.setattr("tinylm.cli.tokenizer_cmds.run_tokenize", warns)
    assert main(["tokenize", "hi"]) == 0
    err = capsys.readouterr().err
    assert err == "tinylm: warning: prompt has 99 tokens but the context window is 8\n"
