"""The ``tinylm`` entry point: usage errors and user errors are one line, exit 2."""

from __future__ import annotations

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
    assert main(args) == 2
    assert capsys.readouterr().err == ""  # rank 1 stays quiet
    monkeypatch.setenv("RANK", "0")
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("tinylm: error: ")
