"""Every command, fed hostile input: one line on stderr, exit 2, nothing written.

The promise of the CLI (see ``tinylm.cli.main``) is that a user's mistake gets
``tinylm: error: ...`` on one line and exit status 2, never a traceback, and
leaves the files as they were. This matrix runs each command in-process with
inputs an adversarial user tried (issue 13): named pipes where a file belongs
(which used to hang), symlink loops, non-UTF-8 configs, empty separators,
numbers that are not numbers, sizes no machine holds. For each it checks the
exit status, the single line and what it names, and that no file in the working
folder (a trained run included) is new or changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import one_torch_thread
from tinylm.cli.main import main
from tinylm.tokenizers.char import CharTokenizer

CORPUS = (
    "Beautiful is better than ugly. Explicit is better than implicit. Simple is better "
    "than complex. Complex is better than complicated. Flat is better than nested.\n"
) * 12

TINY = [
    "--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2", "--set", "block_size=32",
    "--set", "batch_size=4", "--set", "eval_batches=2", "--set", "sample_tokens=8",
    "--set", "eval_every=5", "--quiet",
]  # fmt: skip

HUGE_SEED = "999999999999999999999999"
HUGE_INT = "1" + "0" * 400  # issue 23: no float holds it (OverflowError once)
HUGER_INT = "1" + "0" * 5000  # more digits than int() converts: float() made it inf


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> dict[str, str]:
    """A working folder with a trained run and a hostile file of each kind."""
    root = tmp_path_factory.mktemp("hostile")
    corpus = root / "zen.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    CharTokenizer.train(CORPUS).save(root / "char.json")
    os.mkfifo(root / "fifo")
    os.symlink("loop", root / "loop")  # a link to itself: ELOOP on open
    (root / "latin1.toml").write_bytes(b"[train]\nsteps = 1\n# caf\xe9\n")
    (root / "folder").mkdir()
    (root / "threads.toml").write_text("[train]\nthreads = 100000\n")  # SIGSEGV in torch
    (root / "hfpipe").mkdir()  # a Hugging Face folder whose config.json is a FIFO
    os.mkfifo(root / "hfpipe" / "config.json")
    run = root / "run"
    with one_torch_thread():
        argv = ["train", "--data", str(corpus), "--steps", "5", "--out", str(run), *TINY]
        assert main(argv) == 0
    return {
        "root": str(root),
        "corpus": str(corpus),
        "tok": str(root / "char.json"),
        "fifo": str(root / "fifo"),
        "loop": str(root / "loop"),
        "latin1": str(root / "latin1.toml"),
        "folder": str(root / "folder"),
        "threads": str(root / "threads.toml"),
        "hfpipe": str(root / "hfpipe"),
        "missing": str(root / "missing.txt"),
        "run": str(run),
        "out": str(root / "new"),
    }


# (argv with {placeholders}, a fragment the error line must hold)
CASES = [
    # tokenizer train
    (["tokenizer", "train", "{fifo}", "--out", "{out}.json"], "named pipe"),
    (["tokenizer", "train", "{corpus}", "--vocab-size", "300", "--out", "{fifo}"], "not a regular"),
    (["tokenizer", "train", "{loop}", "--out", "{out}.json"], "symlink loop"),
    (["tokenizer", "train", "{missing}", "--out", "{out}.json"], "does not exist"),
    (["tokenizer", "train", "{corpus}", "--doc-sep", "", "--out", "{out}.json"], "--doc-sep"),
    # tokenize
    (["tokenize", "-t", "{fifo}", "hello"], "named pipe"),
    (["tokenize", "-t", "{loop}", "hello"], "symlink loop"),
    (["tokenize", "-t", "{latin1}", "hello"], "{latin1}"),
    (["tokenize", "--corpus", "{fifo}"], "named pipe"),
    # prepare
    (["prepare", "{corpus}", "-t", "{fifo}", "--out", "{out}"], "named pipe"),
    (["prepare", "{corpus}", "-t", "{loop}", "--out", "{out}"], "symlink loop"),
    (["prepare", "{fifo}", "-t", "{tok}", "--out", "{out}"], "named pipe"),
    (["prepare", "{loop}", "-t", "{tok}", "--out", "{out}"], "symlink loop"),
    (["prepare", "{corpus}", "-t", "{tok}", "--doc-sep", "", "--out", "{out}"], "--doc-sep"),
    # train
    (["train", "--config", "{fifo}", "--out", "{out}"], "named pipe"),
    (["train", "--config", "{loop}", "--out", "{out}"], "symlink loop"),
    (["train", "--config", "{latin1}", "--out", "{out}"], "not UTF-8"),
    (["train", "--data", "{fifo}", "--out", "{out}"], "named pipe"),
    (["train", "--data", "{loop}", "--out", "{out}"], "symlink loop"),
    (["train", "--tokenizer", "{fifo}", "--out", "{out}"], "named pipe"),
    (["train", "--data", "{corpus}", "--doc-sep", "", "--out", "{out}"], "--doc-sep"),
    (["train", "--data", "{corpus}", "--set", f"seed={HUGE_SEED}", "--out", "{out}"], "seed"),
    (["train", "--data", "{corpus}", "--set", "n_embd=200000", "--out", "{out}"], "GiB"),
    (["train", "--data", "{corpus}", "--set", "batch_size=100000000", "--out", "{out}"], "GiB"),
    (["train", "--data", "{corpus}", "--set", "n_layer=100000", "--out", "{out}"], "n_layer"),
    (["train", "--data", "{corpus}", "--set", "vocab_size=4000000001", "--out", "{out}"], "vocab"),
    (["train", "--out", "{run}", "--resume", "--steps", "9", "--set", "optimizer=adamw"], "muon"),
    (["train", "--out", "{run}", "--resume", "--steps", "9", "--doc-sep", "line"], "--doc-sep"),
    (["train", "--data", "{corpus}", "--set", "threads=100000", "--out", "{out}"], "threads"),
    (["train", "--config", "{threads}", "--out", "{out}"], "threads 100,000"),
    (["train", "--data", "{corpus}", "--set", f"lr={HUGE_INT}", "--out", "{out}"], "lr must"),
    (["train", "--data", "{corpus}", "--set", f"dropout={HUGE_INT}", "--out", "{out}"], "dropout"),
    (["train", "--data", "{corpus}", "--set", f"n_embd={HUGE_INT}", "--out", "{out}"], "n_embd"),
    (
        ["train", "--data", "{corpus}", "--set", f"warmup_steps={HUGE_INT}", "--out", "{out}"],
        "warm",
    ),
    (["train", "--data", "{corpus}", "--set", f"lr={HUGER_INT}", "--out", "{out}"], "too large"),
    (["train", "--data", "{corpus}", "--set", "lr=1e400", "--out", "{out}"], "too large"),
    # sample
    (["sample", "{run}", "--temperature", "nan"], "temperature"),
    (["sample", "{run}", "--temperature", "inf"], "temperature"),
    (["sample", "{run}", "--temperature", "-1"], "temperature"),
    (["sample", "{run}", "--seed", HUGE_SEED], "seed"),
    (["sample", "{run}", "--top-p", "nan"], "top_p"),
    (["sample", "{fifo}"], "{fifo}"),
    (["sample", "{missing}"], "does not exist"),
    # eval
    (["eval", "{run}", "--data", "{corpus}", "--max-batches", "0"], "--max-batches"),
    (["eval", "{run}", "--data", "{corpus}", "--max-batches", "-3"], "--max-batches"),
    (["eval", "{run}", "--data", "{corpus}", "--doc-sep", ""], "--doc-sep"),
    (["eval", "{run}", "--data", "{fifo}"], "named pipe"),
    (["eval", "{run}", "--data", "{loop}"], "symlink loop"),
    # inspect, export, import, serve
    (["inspect", "next", "{run}", "Flat", "--temperature", "nan", "--out", "{out}"], "temp"),
    (["inspect", "next", "{fifo}", "Flat", "--out", "{out}"], "{fifo}"),
    (["inspect", "lens", "{missing}", "Flat", "--out", "{out}"], "does not exist"),
    (["export", "{fifo}", "--out", "{out}"], "{fifo}"),
    (["import", "{fifo}", "--out", "{out}"], "{fifo}"),
    (["import", "{hfpipe}", "--out", "{out}"], "named pipe"),
    (["serve", "{missing}"], "does not exist"),
    (["serve", "{run}", "--tokenizer", "{fifo}"], "named pipe"),
]


def fill(item: str, place: dict[str, str]) -> str:
    for key, value in place.items():
        item = item.replace("{" + key + "}", value)
    return item


def digest(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (pipes and links not followed) and a hash of its bytes."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            found[str(path.relative_to(folder))] = "(not a regular file)"
            continue
        found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail, rather than hang the suite, if the command blocks (a FIFO opened for reading)."""

    def expire(signum, frame):
        raise TimeoutError(f"the command still ran after {seconds} s (blocked on a read?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def case_id(value: list[str] | str) -> str:
    return " ".join(value)[:70] if isinstance(value, list) else ""


@pytest.mark.parametrize(("argv", "fragment"), CASES, ids=case_id)
def test_hostile_input_gets_one_line_exit_2_and_writes_nothing(place, capsys, argv, fragment):
    root = Path(place["root"])
    before = digest(root)
    with deadline(60):
        code = main([fill(item, place) for item in argv])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("tinylm: error: "), lines
    assert "Traceback" not in captured.err + captured.out
    assert fill(fragment, place) in lines[0], lines[0]
    assert digest(root) == before  # nothing new, nothing changed, the run included
