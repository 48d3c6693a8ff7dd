"""Documents from the Hugging Face Hub (or local files) via the ``datasets`` library.

``datasets`` is an optional extra (``pip install 'tinylm[datasets]'``), imported
only when a hub corpus is asked for. The same call reads the real Hub and local
files, because ``datasets.load_dataset`` does both::

    load_hub_dataset("roneneldan/TinyStories")                       # the Hub
    load_hub_dataset("json", data_files="stories.jsonl")              # local JSON lines
    load_hub_dataset("text", data_files="book.txt", sample_by="paragraph")

The result is an iterator of documents (strings), which is what
:func:`tinylm.data.prepare.prepare` and the tokenizer trainers take. Rows are read
in batches of one column, so a large dataset streams through without building a
Python dict per row; ``streaming=True`` also avoids downloading it all first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from tinylm.errors import SettingError, TinylmError

_ROWS_PER_READ = 1024


def _import_datasets() -> ModuleType:
    try:
        import datasets
    except ImportError:
        raise TinylmError(
            "loading a Hugging Face dataset needs the datasets package; "
            "install tinylm[datasets] (pip install 'tinylm[datasets]')"
        ) from None
    return datasets


def load_hub_dataset(
    name: str,
    split: str = "train",
    text_field: str = "text",
    cache_dir: str | os.PathLike | None = None,
    data_files: str | list[str] | dict[str, Any] | None = None,
    *,
    config: str | None = None,
    streaming: bool = False,
    **load_kwargs: Any,
) -> Iterator[str]:
    """The non-empty ``text_field`` values of one split of a dataset, as documents.

    ``name`` is a Hub id (``roneneldan/TinyStories``), a builder for local files
    (``text``, ``json``, ``csv``, ``parquet``, with ``data_files``) or a local
    folder. ``config`` selects a dataset configuration; other keyword arguments
    go to ``datasets.load_dataset`` (e.g. ``sample_by="paragraph"`` for the text
    builder, ``revision=``). Problems with the name, split, files or network are
    raised here as :class:`TinylmError`, before the first document is read.
    """
    rows = load_hub_records(
        name,
        split,
        text_field,
        cache_dir,
        data_files,
        config=config,
        streaming=streaming,
        **load_kwargs,
    )
    return _documents(rows, name, text_field)


def load_hub_records(
    name: str,
    split: str = "train",
    field: str = "text",
    cache_dir: str | os.PathLike | None = None,
    data_files: str | list[str] | dict[str, Any] | None = None,
    *,
    config: str | None = None,
    streaming: bool = False,
    field_setting: str = "text_field",
    **load_kwargs: Any,
) -> Iterator[Any]:
    """The values of one ``field`` of one split, row by row, unchecked (``None`` included).

    The arguments are those of :func:`load_hub_dataset`, which takes text from
    here, as does :func:`tinylm.chat.conversations.load_hub_conversations` for a chat
    dataset's ``messages`` lists (each reader checks its values); ``field_setting``
    names the setting that fixes an unknown field.
    """
    dataset = _load(name, split, cache_dir, data_files, config, streaming, load_kwargs)
    columns = dataset.column_names
    if columns is not None and field not in columns:
        raise SettingError(
            f"dataset {name!r} has no field {field!r}; its fields are "
            f"{', '.join(columns)}; set {field_setting} to one of them",
            setting=field_setting,
            value="FIELD",
        )
    return _values(dataset.iter(batch_size=_ROWS_PER_READ), name, field)


def load_hub_rows(
    name: str,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    data_files: str | list[str] | dict[str, Any] | None = None,
    *,
    config: str | None = None,
    streaming: bool = False,
    **load_kwargs: Any,
) -> Iterator[dict[str, Any]]:
    """Whole rows (field -> value) of one split, unchecked, for readers that need
    several fields of a row (a multiple-choice item: context, choices, label).

    The arguments are those of :func:`load_hub_dataset`; as there, a dataset that
    cannot be loaded fails here, before the first row is read.
    """
    dataset = _load(name, split, cache_dir, data_files, config, streaming, load_kwargs)
    return _rows(dataset.iter(batch_size=_ROWS_PER_READ))


def _rows(batches: Iterable[dict[str, list]]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        columns = list(batch)
        for values in zip(*(batch[column] for column in columns), strict=True):
            yield dict(zip(columns, values, strict=True))


def _load(
    name: str,
    split: str,
    cache_dir: str | os.PathLike | None,
    data_files: str | list[str] | dict[str, Any] | None,
    config: str | None,
    streaming: bool,
    load_kwargs: dict[str, Any],
) -> Any:
    """``datasets.load_dataset``, its failures as one line."""
    datasets = _import_datasets()
    try:
        return datasets.load_dataset(
            name,
            config,
            split=split,
            cache_dir=None if cache_dir is None else str(cache_dir),
            data_files=data_files,
            streaming=streaming,
            **load_kwargs,
        )
    except (OSError, ValueError) as exc:  # FileNotFoundError, ConnectionError, bad split
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
        raise TinylmError(
            f"cannot load dataset {name!r} split {split!r}: {detail}; check the name, split "
            "and data files, and that the Hub is reachable"
        ) from None


def _values(batches: Iterable[dict[str, list]], name: str, field: str) -> Iterator[Any]:
    for batch in batches:
        if field not in batch:  # only a streaming dataset gets this far without it
            raise TinylmError(f"dataset {name!r} has no field {field!r}")
        yield from batch[field]


def _documents(values: Iterable[Any], name: str, text_field: str) -> Iterator[str]:
    for text in values:
        if text is None:  # a missing value, not a document
            continue
        if not isinstance(text, str):
            raise TinylmError(
                f"field {text_field!r} of dataset {name!r} holds {type(text).__name__}, "
                "not text; pass the name of a text field"
            )
        if text.strip():
            yield text
