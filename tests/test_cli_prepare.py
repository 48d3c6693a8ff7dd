"""`tinylm prepare`, run the way a user runs it: a summary, or one error line and exit 2."""

from __future__ import annotations

import json
import sys

import pytest

from tinylm.cli.main import main
from tinylm.data.prepared import load_prepared
from tinylm.tokenizers.char import CharTokenizer

NAMES = "\n".join(
    f"{a}{b}" for a in ("em", "ol", "av", "is", "mi") for b in ("ma", "ia", "a", "la")
)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text((NAMES + "\n") * 6, encoding="utf-8")
    return path


@pytest.fixture
def tokenizer(tmp_path, corpus):
    path = tmp_path / "char.json"
    CharTokenizer.train(corpus, separator="file").save(path)  # newline included
    return path


def prepare_cli(*args: str) -> int:
    return main(["prepare", *map(str, args), "--quiet", "--workers", "1"])


def test_prepare_writes_a_dataset_and_prints_a_summary(tmp_path, corpus, tokenizer, capsys):
    out = tmp_path / "data"
    code = prepare_cli(corpus, "--tokenizer", tokenizer, "--out", out, "--doc-sep", "line")
    assert code == 0
    printed = capsys.readouterr()
    assert printed.err == ""  # --quiet: no progress bar
    prepared = load_prepared(out)
    assert prepared.meta["documents"] == 120 and prepared.meta["split"]["method"] == "documents"
    for expected in ("documents   120", "train /", "val (uint16)", "chars/token 1.00", "char,"):
        assert expected in printed.out
    assert str(corpus) in printed.out and "note: val has only" in printed.out


def test_val_fraction_and_separator_reach_the_library(tmp_path, corpus, tokenizer, capsys):
    out = tmp_path / "data"
    args = ("--tokenizer", tokenizer, "--out", out, "--val-fraction", "0.5", "--doc-sep", "file")
    assert prepare_cli(corpus, *args) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["documents"] == 1 and meta["split"] == {"method": "tokens", "val_fraction": 0.5}
    assert "val is the last 50% of the tokens" in capsys.readouterr().out


def test_progress_bar_is_on_stderr_without_quiet(tmp_path, corpus, tokenizer, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # bars are drawn on terminals only
    args = [str(corpus), "--tokenizer", str(tokenizer), "--out", str(tmp_path / "d")]
    assert main(["prepare", *args, "--doc-sep", "line", "--workers", "1"]) == 0
    assert "prepare" in capsys.readouterr().err


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path, corpus, tokenizer, capsys):
    args = [str(corpus), "--tokenizer", str(tokenizer), "--out", str(tmp_path / "d")]
    assert main(["prepare", *args, "--doc-sep", "line", "--workers", "1"]) == 0
    assert capsys.readouterr().err == ""


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinylm: error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda tmp: (tmp / "missing.txt", "char.json", "d"), "does not exist"),
        (lambda tmp: (tmp / "empty.txt", "char.json", "d"), "no documents"),
        (lambda tmp: ("names.txt", tmp / "nope.json", "d"), "does not exist"),
        (lambda tmp: ("names.txt", tmp / "corrupt.json", "d"), "corrupt.json"),
        (lambda tmp: ("names.txt", "char.json", tmp / "names.txt" / "d"), "cannot write"),
        (lambda tmp: ("names.txt", "char.json", tmp / "mine"), "not a tinylm dataset"),
    ],
    ids=[
        "missing-corpus",
        "empty-corpus",
        "missing-tokenizer",
        "corrupt-tokenizer",
        "out-under-a-file",
        "foreign-out",
    ],  # fmt: skip
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, corpus, tokenizer, capsys, setup, message):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "corrupt.json").write_text('{"format": "tinylm-tokenizer", "vers')
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    source, tok, out = (tmp_path / p if isinstance(p, str) else p for p in setup(tmp_path))
    assert prepare_cli(source, "--tokenizer", tok, "--out", out, "--doc-sep", "line") == 2
    assert message in one_error_line(capsys)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "d").exists()


def test_a_bad_val_fraction_is_a_one_line_error(tmp_path, corpus, tokenizer, capsys):
    args = ("--tokenizer", tokenizer, "--out", tmp_path / "d", "--val-fraction", "1.5")
    assert prepare_cli(corpus, *args) == 2
    assert "val_fraction" in one_error_line(capsys)


def test_a_hub_corpus_from_a_local_folder(tmp_path, tokenizer, capsys):
    pytest.importorskip("datasets", reason="the optional datasets package is not installed")
    folder = tmp_path / "hub"
    folder.mkdir()
    rows = [{"text": name} for name in NAMES.split("\n")] * 3
    (folder / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "d"
    assert prepare_cli(f"hf:{folder}", "--tokenizer", tokenizer, "--out", out) == 0
    assert load_prepared(out).meta["documents"] == 60
    assert f"prepared hf:{folder}" in capsys.readouterr().out
    assert prepare_cli(f"hf:{folder}", "--tokenizer", tokenizer, "--out", out, "--text-field", "x")
    assert "no field 'x'" in one_error_line(capsys)
