"""Where training text comes from: the built-in corpus, files, folders and globs.

The built-in corpus is Python's own reference documentation, which ships with
every CPython as ``pydoc_data.topics``: about 80 topics (~460 KB of English
prose and code), one document per topic, no download needed.

A *document* is the unit that BOS/EOS wrap. In a file, documents are separated by
a separator string (``<|endoftext|>`` by default, as in GPT-2's training data);
other choices are one document per line (names lists), per blank-line-separated
paragraph (stories), or per file.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tinylm.errors import SettingError, TinylmError
from tinylm.untrusted_files import describe

#: Name that selects the built-in corpus wherever a corpus is asked for.
BUILTIN_CORPUS = "pydocs"
#: The built-in corpus of short documents: its distinct lowercase words, one per document.
BUILTIN_WORDS = "pydocs-words"

#: Named document separators; any other string is used literally.
SEPARATORS: dict[str, str | None] = {
    "eot": "<|endoftext|>",
    "line": "\n",
    "blank": "\n\n",
    "file": None,
}

_READ_CHUNK = 1 << 22  # 4 MiB: big enough to be fast, small enough to stream


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


def resolve_separator(separator: str | None) -> str | None:
    """A separator name (eot, line, blank, file) or a literal string (never empty)."""
    if separator is None:
        return None
    if separator == "":
        raise SettingError(
            "the document separator is empty; use eot, line, blank, file or a non-empty string",
            setting="separator",
        )
    return SEPARATORS.get(separator, separator)


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


def _iter_chunks(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            while chunk := handle.read(_READ_CHUNK):
                yield chunk
    except UnicodeDecodeError as exc:
        raise TinylmError(f"{path} is not UTF-8 text ({exc.reason}); convert it to UTF-8") from None
    except OSError as exc:
        raise TinylmError(f"cannot read {path}: {exc.strerror or exc}") from None


def iter_file_documents(path: Path, separator: str | None = "<|endoftext|>") -> Iterator[str]:
    """Stream the documents of one file, never holding more than one document plus a chunk.

    Leading and trailing newlines around each document are kept as they are, except
    that empty documents (e.g. after a trailing separator) are skipped.
    """
    if separator is None:
        text = "".join(_iter_chunks(path))
        if text:
            yield text
        return
    buffer = ""
    for chunk in _iter_chunks(path):
        buffer += chunk
        *complete, buffer = buffer.split(separator)
        yield from (doc for doc in complete if doc.strip())
    if buffer.strip():
        yield buffer


def iter_documents(
    corpus: str | os.PathLike | Iterable[str | os.PathLike],
    separator: str | None = "<|endoftext|>",
) -> Iterator[str]:
    """Documents from text, a path, or an iterable of texts and paths.

    A plain ``str`` is always *text*; paths must be ``os.PathLike`` (``Path``), so
    that a one-word corpus is never mistaken for a missing file.
    """
    separator = resolve_separator(separator)
    if isinstance(corpus, str):
        yield corpus
        return
    if isinstance(corpus, os.PathLike):
        yield from iter_file_documents(Path(corpus), separator)
        return
    for item in corpus:
        if isinstance(item, str):
            yield item
        elif isinstance(item, os.PathLike):
            yield from iter_file_documents(Path(item), separator)
        else:
            raise TinylmError(
                f"corpus items must be str (text) or Path (file), got {type(item).__name__}"
            )


def corpus_from_specs(specs: Sequence[str]) -> list[str] | list[Path]:
    """What the CLI passes on: the built-in documents, or the expanded file list."""
    if not specs or list(specs) == [BUILTIN_CORPUS]:
        return builtin_documents()
    if list(specs) == [BUILTIN_WORDS]:
        return builtin_words()
    return expand_paths(specs)
