"""Cutting text into documents: the unit that BOS/EOS wrap, read from text or files.

A file holds documents separated by a separator string (``<|endoftext|>`` by
default, as in GPT-2's training data); other choices are one document per line
(names lists), per blank-line-separated paragraph (stories), or per file. Files
are streamed in chunks, so a corpus larger than memory can be read.

This is the one reader of training text. It needs only the standard library, so
both the tokenizers (which train on documents) and ``tinylm.data`` (which
prepares them) use it without depending on each other; where the text comes
from (the built-in corpus, folders, globs) is ``tinylm.data.corpus``'s concern.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from tinylm.errors import SettingError, TinylmError

#: Named document separators; any other string is used literally.
SEPARATORS: dict[str, str | None] = {
    "eot": "<|endoftext|>",
    "line": "\n",
    "blank": "\n\n",
    "file": None,
}

_READ_CHUNK = 1 << 22  # 4 MiB: big enough to be fast, small enough to stream


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
