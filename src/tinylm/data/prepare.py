"""Preparation: a corpus encoded into a prepared dataset (``tinylm prepare``).

The result is the directory :mod:`tinylm.data.prepared` describes and opens.
Every document is encoded with ``tokenizer.encode_document`` (``[BOS] + ids +
[EOS]`` as the tokenizer defines them) and the documents are concatenated, so
the model learns where texts start and end from the boundary tokens.

**How train and val are split.** With many documents, whole documents go to val,
spread evenly over the corpus: document ``i`` is a val document when the
fractional part of ``i * 0.618...`` (the golden ratio) is below ``val_fraction``.
This is deterministic, needs no look-ahead (so it streams), gives val very nearly
``val_fraction`` of the documents at every prefix of the corpus, and does not
take the *end* of the corpus, which matters for sorted lists such as names.txt,
whose tail is all the rare names starting with z. When the corpus has fewer than
:data:`MIN_SPLIT_DOCUMENTS` documents in either split (a single-document corpus
such as Tiny Shakespeare), the split falls back to the token stream: val is its
last ``val_fraction`` of tokens, and never less than one token. ``meta.json``
records which method was used.

**Streaming and workers.** Documents are read lazily and encoded in batches of
about :data:`BATCH_CHARS` characters; each batch's tokens are appended to the
split files at once, so memory holds a few batches, never the corpus. A corpus of
more than one batch is encoded by a pool of processes (the platform's default
start method; with spawn, as on macOS and Windows, call it under
``if __name__ == "__main__":``); a smaller one is encoded in this process and
pays nothing for a pool.

**Atomicity.** The dataset is built in a hidden temporary directory beside the
target and renamed into place at the end; a failure or Ctrl-C removes the
temporary directory and leaves an existing dataset untouched.

No torch here: ``tinylm prepare`` and its worker processes never need it.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tinylm import __version__
from tinylm.data.corpus import iter_documents
from tinylm.data.prepared import (
    FORMAT_NAME,
    FORMAT_VERSION,
    META_FILE,
    SPLIT_FILES,
    TOKENIZER_FILE,
    token_dtype,
)
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_directory
from tinylm.progress import progress_bar
from tinylm.tokenizers.base import Tokenizer
from tinylm.workers import resolve_workers

#: Characters per encoding batch: large enough to amortise sending it to a worker,
#: small enough that a few in flight per worker fit easily in memory.
BATCH_CHARS = 1 << 20

#: Both splits need this many documents for the document-level split; below it
#: the split is taken from the token stream.
MIN_SPLIT_DOCUMENTS = 10

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_COPY_TOKENS = 1 << 22  # tokens per chunk when re-splitting a token stream


# -- encoding -------------------------------------------------------------------


def encode_batch(
    tokenizer: Tokenizer, documents: list[str], dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Encode documents; return their concatenated ids and the length of each."""
    encoded = [tokenizer.encode_document(doc) for doc in documents]
    lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
    tokens = np.fromiter(chain.from_iterable(encoded), dtype=np.int64, count=int(lengths.sum()))
    if tokens.size and (tokens.min() < 0 or tokens.max() >= tokenizer.vocab_size):
        bad = int(tokens.max() if tokens.max() >= tokenizer.vocab_size else tokens.min())
        raise TinylmError(
            f"the tokenizer produced id {bad}, outside its vocabulary of "
            f"{tokenizer.vocab_size}; the tokenizer file is inconsistent, retrain it"
        )
    return tokens.astype(dtype), lengths


def _batches(documents: Iterable[str], max_chars: int) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


_worker_state: dict[str, Any] = {}


def _init_worker(tokenizer: Tokenizer, dtype: str) -> None:
    _worker_state["tokenizer"] = tokenizer
    _worker_state["dtype"] = np.dtype(dtype)


def _encode_in_worker(documents: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return encode_batch(_worker_state["tokenizer"], documents, _worker_state["dtype"])


def _encode_parallel(
    batches: Iterator[list[str]], tokenizer: Tokenizer, dtype: np.dtype, workers: int
) -> Iterator[tuple[list[str], tuple[np.ndarray, np.ndarray]]]:
    """Encode batches in worker processes, yielding results in corpus order.

    At most two batches per worker are in flight, so a huge corpus streams
    through instead of being queued in memory all at once.
    """
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context(),
        initializer=_init_worker,
        initargs=(tokenizer, dtype.str),
    )
    pending: deque = deque()
    try:
        for batch in batches:
            pending.append((batch, pool.submit(_encode_in_worker, batch)))
            if len(pending) >= 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _encode_stream(
    documents: Iterable[str], tokenizer: Tokenizer, dtype: np.dtype, workers: int
) -> Iterator[tuple[list[str], tuple[np.ndarray, np.ndarray]]]:
    """Encoded batches in order; a pool only when there is more than one batch."""
    batches = _batches(documents, BATCH_CHARS)
    first = next(batches, None)
    if first is None:
        return
    second = next(batches, None)
    if second is None or workers == 1:
        for batch in chain([first], [] if second is None else [second], batches):
            yield batch, encode_batch(tokenizer, batch, dtype)
        return
    yield from _encode_parallel(chain([first, second], batches), tokenizer, dtype, workers)


# -- splitting --------------------------------------------------------------------


def is_val_document(index: np.ndarray, val_fraction: float) -> np.ndarray:
    """Which documents (by position in the corpus) belong to val: the golden-ratio rule."""
    return np.modf(index.astype(np.float64) * _GOLDEN)[0] < val_fraction


class _SplitWriter:
    """Appends encoded batches to train.part / val.part, document by document.

    Until both splits hold :data:`MIN_SPLIT_DOCUMENTS` documents the length of
    every document is remembered, so that :meth:`finish` can fall back to a
    token-stream split if the corpus turns out to be that small.
    """

    def __init__(self, folder: Path, val_fraction: float) -> None:
        self.folder = folder
        self.val_fraction = val_fraction
        # Open for the writer's lifetime; prepare() closes them in a ``finally``.
        self.files: dict[str, BinaryIO] = {
            split: open(folder / f"{split}.part", "wb")  # noqa: SIM115
            for split in SPLIT_FILES
        }
        self.tokens = {"train": 0, "val": 0}
        self.documents = {"train": 0, "val": 0}
        self.small_corpus_lengths: list[int] | None = []

    @property
    def total_documents(self) -> int:
        return self.documents["train"] + self.documents["val"]

    def add(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        index = np.arange(self.total_documents, self.total_documents + len(lengths))
        val_docs = is_val_document(index, self.val_fraction)
        val_tokens = np.repeat(val_docs, lengths)
        for split, mask in (("train", ~val_tokens), ("val", val_tokens)):
            part = tokens[mask]
            self.files[split].write(part.tobytes())
            self.tokens[split] += len(part)
        self.documents["val"] += int(val_docs.sum())
        self.documents["train"] += int((~val_docs).sum())
        if self.small_corpus_lengths is not None:
            self.small_corpus_lengths.extend(lengths.tolist())
            if min(self.documents.values()) >= MIN_SPLIT_DOCUMENTS:
                self.small_corpus_lengths = None  # decided: split by documents

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()

    def finish(self, dtype: np.dtype) -> dict[str, Any]:
        """Close the parts and produce train.bin / val.bin; return the split record."""
        self.close()
        total = self.tokens["train"] + self.tokens["val"]
        if total < 2:
            raise TinylmError(
                f"the corpus encodes to {total} token(s); train and val need at least one "
                "each, give more text"
            )
        if self.small_corpus_lengths is None:
            for split, name in SPLIT_FILES.items():
                os.replace(self.folder / f"{split}.part", self.folder / name)
            return {
                "method": "documents",
                "train_documents": self.documents["train"],
                "val_documents": self.documents["val"],
            }
        n_val = min(total - 1, max(1, round(total * self.val_fraction)))
        self._resplit_by_tokens(dtype, total - n_val)
        self.tokens = {"train": total - n_val, "val": n_val}
        return {"method": "tokens", "train_documents": None, "val_documents": None}

    def _resplit_by_tokens(self, dtype: np.dtype, cut: int) -> None:
        """Put the documents back in corpus order and cut the stream at token ``cut``."""
        lengths = np.asarray(self.small_corpus_lengths, dtype=np.int64)
        val_docs = is_val_document(np.arange(len(lengths)), self.val_fraction)
        parts = {split: self._read_part(split, dtype) for split in SPLIT_FILES}
        offsets = {"train": 0, "val": 0}
        written = 0
        with (
            open(self.folder / SPLIT_FILES["train"], "wb") as train,
            open(self.folder / SPLIT_FILES["val"], "wb") as val,
        ):
            for length, in_val in zip(lengths.tolist(), val_docs.tolist(), strict=True):
                split = "val" if in_val else "train"
                start = offsets[split]
                offsets[split] += length
                for lo in range(start, start + length, _COPY_TOKENS):
                    chunk = np.asarray(parts[split][lo : min(start + length, lo + _COPY_TOKENS)])
                    head = max(0, min(len(chunk), cut - written))
                    train.write(chunk[:head].tobytes())
                    val.write(chunk[head:].tobytes())
                    written += len(chunk)
        parts.clear()  # unmap before deleting
        for split in SPLIT_FILES:
            (self.folder / f"{split}.part").unlink()

    def _read_part(self, split: str, dtype: np.dtype) -> np.ndarray:
        count = self.tokens[split]
        if count == 0:  # np.memmap cannot map an empty file
            return np.empty(0, dtype=dtype)
        return np.memmap(self.folder / f"{split}.part", dtype=dtype, mode="r", shape=(count,))


# -- prepare ----------------------------------------------------------------------


def describe_corpus(corpus: Any) -> str:
    """A short human description of a corpus argument, recorded in meta.json."""
    if isinstance(corpus, str):
        return f"text ({len(corpus)} characters)"
    if isinstance(corpus, os.PathLike):
        return str(corpus)
    if isinstance(corpus, (list, tuple)):
        paths = [str(item) for item in corpus if isinstance(item, os.PathLike)]
        if paths:
            more = f" (+{len(paths) - 3} more files)" if len(paths) > 3 else ""
            return ", ".join(paths[:3]) + more
        return f"{len(corpus)} in-memory documents"
    return type(corpus).__name__


def _check_val_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise TinylmError(
            f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}; "
            "e.g. 0.1 keeps 10% for validation"
        )


def prepare(
    corpus: Any,
    tokenizer: Tokenizer,
    out_dir: str | os.PathLike,
    *,
    val_fraction: float = 0.1,
    separator: str | None = "eot",
    workers: int | None = None,
    progress: bool = True,
    description: str | None = None,
) -> dict[str, Any]:
    """Encode a corpus into ``out_dir`` (train.bin, val.bin, meta.json, tokenizer.json).

    ``corpus`` is anything :func:`tinylm.data.corpus.iter_documents` accepts: text, a
    ``Path``, or an iterable of texts and paths (e.g. a hub dataset's documents).
    ``separator`` splits files into documents (eot, line, blank, file or a
    literal string). Returns the metadata written to meta.json. See the module
    docstring for how the split is made.
    """
    _check_val_fraction(val_fraction)
    workers = resolve_workers(workers)
    dtype = token_dtype(tokenizer.vocab_size)
    out_dir = Path(out_dir)
    documents = iter_documents(corpus, separator)
    with atomic_directory(out_dir, META_FILE, "tinylm dataset") as tmp:
        writer = _SplitWriter(tmp, val_fraction)
        try:
            characters = _write_tokens(documents, tokenizer, dtype, workers, writer, progress)
        finally:
            writer.close()
        if writer.total_documents == 0:
            raise TinylmError("the corpus has no documents; give a non-empty text file or folder")
        split = writer.finish(dtype)
        tokenizer.save(tmp / TOKENIZER_FILE)
        meta = _build_meta(tokenizer, dtype, writer, split, characters, val_fraction)
        meta["separator"] = separator
        meta["corpus"] = description or describe_corpus(corpus)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return meta


def _write_tokens(
    documents: Iterable[str],
    tokenizer: Tokenizer,
    dtype: np.dtype,
    workers: int,
    writer: _SplitWriter,
    progress: bool,
) -> int:
    """Encode and write every batch; return the number of characters read."""

    characters = 0
    with progress_bar(progress, desc="prepare", unit=" docs") as bar:
        for batch, (tokens, lengths) in _encode_stream(documents, tokenizer, dtype, workers):
            writer.add(tokens, lengths)
            characters += sum(len(doc) for doc in batch)
            bar.update(len(batch))
            bar.set_postfix(tokens=writer.tokens["train"] + writer.tokens["val"], refresh=False)
    return characters


def _build_meta(
    tokenizer: Tokenizer,
    dtype: np.dtype,
    writer: _SplitWriter,
    split: dict[str, Any],
    characters: int,
    val_fraction: float,
) -> dict[str, Any]:

    total = writer.tokens["train"] + writer.tokens["val"]
    boundaries = len({tokenizer.bos_id, tokenizer.eos_id} - {None})
    if tokenizer.bos_id is not None and tokenizer.bos_id == tokenizer.eos_id:
        boundaries = 2  # one id, used to open and to close each document
    content = total - boundaries * writer.total_documents
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created_by": f"tinylm {__version__}",
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "fingerprint": tokenizer.fingerprint(),
            "kind": tokenizer.kind,
        },
        "vocab_size": tokenizer.vocab_size,
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "pad_id": tokenizer.pad_id,
        "dtype": dtype.name,
        "split": {"method": split["method"], "val_fraction": val_fraction},
        "train": {
            "file": SPLIT_FILES["train"],
            "tokens": writer.tokens["train"],
            "documents": split["train_documents"],
        },
        "val": {
            "file": SPLIT_FILES["val"],
            "tokens": writer.tokens["val"],
            "documents": split["val_documents"],
        },
        "documents": writer.total_documents,
        "characters": characters,
        "chars_per_token": round(characters / content, 4) if content > 0 else None,
    }
