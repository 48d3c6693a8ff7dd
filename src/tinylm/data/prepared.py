"""A prepared dataset on disk: its layout, and opening it read-only for training.

``tinylm prepare`` (:mod:`tinylm.data.prepare`) writes a directory::

    meta.json        format, tokenizer fingerprint, dtype, token/document counts
    tokenizer.json   the tokenizer that made the ids (so the data explains itself)
    train.bin        flat token ids, uint16 when vocab_size <= 65536, else uint32
    val.bin          the same for the validation split

Training opens it with :func:`load_prepared`: the splits become memmaps, so a
corpus larger than memory costs nothing until batches read from it, and every
field of ``meta.json`` is checked against the files before a step is taken.
Each document in a split is ``[BOS] + ids + [EOS]``; :func:`document_spans` finds
them again in the flat stream.

Numpy only, no torch: ``tinylm prepare`` and its worker processes never need it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer
from tinylm.untrusted_files import Record, check_format, read_json

#: Identifies a tinylm prepared-data directory; bumped when the layout changes.
FORMAT_NAME = "tinylm-data"
FORMAT_VERSION = 1

#: The file that makes a folder a prepared dataset (and the last one written).
META_FILE = "meta.json"
TOKENIZER_FILE = "tokenizer.json"
SPLIT_FILES = {"train": "train.bin", "val": "val.bin"}


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id: half the disk of uint32 when it fits."""
    if vocab_size > 1 << 32:  # uint32 would wrap id 2**32 + 7 to 7, silently
        raise TinylmError(
            f"token ids up to {vocab_size - 1:,} do not fit the 32-bit token files; use a "
            "tokenizer whose ids are below 2**32"
        )
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


@dataclass(frozen=True)
class PreparedData:
    """A prepared dataset, opened read-only: splits as memmaps, nothing loaded into RAM."""

    path: Path
    train: np.memmap
    val: np.memmap
    meta: dict[str, Any]
    tokenizer_path: Path

    @property
    def pad_id(self) -> int:
        """The id document batches pad with: PAD, else BOS, else EOS (masked out anyway)."""
        for key in ("pad_id", "bos_id", "eos_id"):
            if self.meta.get(key) is not None:
                return int(self.meta[key])
        return 0

    def document_spans(self, split: str = "train") -> np.ndarray:
        """``(n, 2)`` start/end offsets of the documents of a split (for document batches)."""
        data = self.train if split == "train" else self.val
        return document_spans(data, self.meta.get("bos_id"), self.meta.get("eos_id"))


def _rerun_hint(path: Path) -> str:
    return f"prepare the corpus into {path} again (tinylm prepare)"


def is_prepared_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a prepared dataset folder (it has meta.json), not raw text."""
    return Path(path).is_dir() and (Path(path) / META_FILE).is_file()


def load_prepared(path: str | os.PathLike) -> PreparedData:
    """Open a directory written by :func:`prepare`, checking it is complete."""
    path = Path(path)
    if not path.is_dir():
        raise TinylmError(f"no prepared data at {path}; {_rerun_hint(path)}")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise TinylmError(
            f"{path} is not a tinylm dataset (missing {META_FILE}); {_rerun_hint(path)}"
        )
    meta = read_json(meta_path, _rerun_hint(path))
    check_format(meta, FORMAT_NAME, FORMAT_VERSION, path, "tinylm dataset", _rerun_hint(path))
    record = Record(meta, str(meta_path), _rerun_hint(path))
    try:
        dtype = np.dtype(meta["dtype"])
        train, val = (_open_split(path, record, split, dtype) for split in ("train", "val"))
        tokenizer_path = path / record.record("tokenizer").file_name("file")
    except TinylmError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise TinylmError(
            f"{meta_path} is incomplete ({type(exc).__name__}: {exc}); {_rerun_hint(path)}"
        ) from None
    return PreparedData(path, train, val, {**meta, "path": str(path)}, tokenizer_path)


def _open_split(path: Path, meta: Record, split: str, dtype: np.dtype) -> np.memmap:
    record = meta.record(split)
    file = path / record.file_name("file")  # never a path out of the dataset's folder
    count = record.int("tokens")
    if count < 1:
        raise TinylmError(f"the {split} split of {path} is empty; {_rerun_hint(path)}")
    expected = count * dtype.itemsize
    actual = file.stat().st_size if file.is_file() else None
    if actual != expected:
        found = "is missing" if actual is None else f"has {actual} bytes"
        raise TinylmError(
            f"{file} {found}, but {META_FILE} says {count} {dtype.name} tokens ({expected} "
            f"bytes); the dataset is truncated or corrupt, {_rerun_hint(path)}"
        )
    return np.memmap(file, dtype=dtype, mode="r", shape=(count,))


def check_tokenizer(meta: dict[str, Any] | PreparedData, tokenizer: Tokenizer) -> None:
    """Refuse to train on ids made by a different tokenizer: they would mean other text."""
    if isinstance(meta, PreparedData):
        meta = meta.meta
    where = meta.get("path", "the prepared data")
    theirs = meta.get("tokenizer", {}).get("fingerprint")
    ours = tokenizer.fingerprint()
    if theirs != ours:
        raise TinylmError(
            f"data in {where} was prepared with tokenizer {theirs}, but the run uses {ours}; "
            "prepare the text again with this tokenizer (tinylm prepare), "
            f"or use the tokenizer it was made with ({where}/{TOKENIZER_FILE})"
        )


def document_spans(data: np.ndarray, bos_id: int | None, eos_id: int | None) -> np.ndarray:
    """``(n, 2)`` ``[start, end)`` offsets of the documents in a flat token stream.

    A document ends after its EOS. When BOS and EOS are the same id (the char
    tokenizer), a document ends where that id is directly followed by itself
    (close, then open of the next). Without EOS, documents start at each BOS.
    A split cut mid-document simply yields shorter first/last spans.
    """
    data = np.asarray(data)
    if eos_id is not None and eos_id == bos_id:
        ends = np.flatnonzero((data[:-1] == eos_id) & (data[1:] == eos_id)) + 1
    elif eos_id is not None:
        ends = np.flatnonzero(data == eos_id) + 1
    elif bos_id is not None:
        ends = np.flatnonzero(data == bos_id)
    else:
        raise TinylmError("the tokenizer has neither BOS nor EOS; documents cannot be found")
    bounds = np.unique(np.concatenate([[0], ends, [len(data)]]))
    spans = np.stack([bounds[:-1], bounds[1:]], axis=1)
    return spans[spans[:, 1] - spans[:, 0] >= 2]  # one token has no next-token target
