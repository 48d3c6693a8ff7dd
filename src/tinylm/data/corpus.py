"""Where training text comes from: the built-in corpus, files, folders and globs.

The built-in corpus is Python's own reference documentation, which ships with
every CPython as ``pydoc_data.topics``: about 80 topics (~460 KB of English
prose and code), one document per topic, no download needed.

A *document* is the unit that BOS/EOS wrap. Cutting text and files into documents
(by ``<|endoftext|>``, line, blank line or file) is :mod:`tinylm.documents`'s job,
shared with the tokenizers; ``iter_documents`` is imported here so that a corpus and
its documents are read from one place.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from tinylm.documents import iter_documents as iter_documents  # the one reader of text
from tinylm.errors import TinylmError
from tinylm.untrusted_files import describe

#: Name that selects the built-in corpus wherever a corpus is asked for.
BUILTIN_CORPUS = "pydocs"
#: The built-in corpus of short documents: its distinct lowercase words, one per document.
BUILTIN_WORDS = "pydocs-words"


def builtin_documents() -> list[str]:
    """The built-in corpus: one document per pydoc topic, in a stable order."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def builtin_words() -> list[str]:
    """The distinct all-lowercase words (a-z, two letters or more) of the built-in corpus.

    About 3,400 short documents such as ``iterator`` or ``keyword``, sorted: the
    default corpus of the scratch engine, which trains one short document per
    step. They ship with every CPython, and their alphabet is microgpt's (26
    letters, plus BOS: a vocabulary of 27), like the names list the seed uses.
    """
    import re

    words: set[str] = set()
    for document in builtin_documents():
        words.update(w for w in re.findall(r"[A-Za-z]+", document) if w.islower() and len(w) > 1)
    return sorted(words)


def expand_paths(specs: Sequence[str | os.PathLike]) -> list[Path]:
    """Turn files, folders (all non-hidden files below) and globs into a file list.

    A file reached twice (a glob through a symlink loop, ``loopdir/self -> .``, or
    the same file named twice) is listed once: read twice, it would land in both
    the training and the validation split.
    """
    paths: list[Path] = []
    for spec in specs:
        paths.extend(_expand_one(str(spec)))
    return _unique_files(paths)


def _expand_one(text: str) -> list[Path]:
    if any(ch in text for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            raise TinylmError(f"no files match {text!r}; check the pattern")
        return files
    if Path(text).is_dir():
        files = sorted(
            p
            for p in Path(text).rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.parts)
        )
        if not files:
            raise TinylmError(f"folder {text} holds no files; give a folder of text files")
        return files
    kind = describe(text)
    if kind == "missing":
        raise TinylmError(f"corpus {text} does not exist; give a text file, folder or glob")
    if kind is not None:  # a FIFO would block the read forever; a loop is no file at all
        raise TinylmError(f"corpus {text} is {kind}; give a text file, folder or glob")
    return [Path(text)]


def _unique_files(paths: list[Path]) -> list[Path]:
    """``paths`` without the ones that resolve to a file already listed (first kept)."""
    seen: set[Path] = set()
    unique = []
    for path in paths:
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


def read_text(path: Path) -> str:
    """Read a whole UTF-8 file with an error a user can act on."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TinylmError(
            f"{path} is not UTF-8 text (bad byte at offset {exc.start}); convert it to UTF-8"
        ) from None
    except OSError as exc:
        raise TinylmError(f"cannot read {path}: {exc.strerror or exc}") from None


def corpus_from_specs(specs: Sequence[str]) -> list[str] | list[Path]:
    """What the CLI passes on: the built-in documents, or the expanded file list."""
    if not specs or list(specs) == [BUILTIN_CORPUS]:
        return builtin_documents()
    if list(specs) == [BUILTIN_WORDS]:
        return builtin_words()
    return expand_paths(specs)
