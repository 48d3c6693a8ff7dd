"""A run's training data: a prepared folder as given, or raw text prepared once and cached.

Raw text (files, folders, globs, or the built-in corpus) is tokenized into
``<run>/data/<key>/`` the first time and reused after that. The key hashes what
decides the token ids (the corpus's identity, the tokenizer spec, the document
separator), so a second run on the same text with the same tokenizer reuses
them, and any change makes a new entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.data import prepare as preparing  # a module: tests replace its prepare
from tinylm.data.corpus import BUILTIN_CORPUS, BUILTIN_WORDS, corpus_from_specs
from tinylm.data.prepared import META_FILE, check_tokenizer, is_prepared_dir, load_prepared
from tinylm.errors import SettingError
from tinylm.run.folder import relative_to
from tinylm.run.settings import DEFAULT_TOKENIZER
from tinylm.run_layout import DATA_CACHE
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.formats import load_tokenizer
from tinylm.tokenizers.spec import parse_tokenizer_spec, tokenizer_from_spec
from tinylm.train import distributed

# -- cache keys -----------------------------------------------------------------------


def corpus_fingerprint(specs: Sequence[str]) -> str:
    """Identity of a raw corpus: built-in text by content; files by path, size and mtime.

    Hashing file contents would read a multi-GB corpus just to find the cache;
    size and modification time change whenever a file is edited.
    """
    digest = hashlib.sha256()
    if not specs or list(specs) in ([BUILTIN_CORPUS], [BUILTIN_WORDS]):
        for doc in corpus_from_specs(list(specs)):
            digest.update(doc.encode("utf-8"))
            digest.update(b"\0")
    else:
        for path in corpus_from_specs(list(specs)):
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def tokenizer_fingerprint(spec: str) -> str:
    """A tokenizer spec's identity; a file by its content."""
    parsed = parse_tokenizer_spec(spec)
    if parsed.kind == "file":
        return "file:" + hashlib.sha256(parsed.path.read_bytes()).hexdigest()[:16]
    return spec


def cache_key(data_specs: Sequence[str], tokenizer_key: str, separator: str) -> str:
    text = json.dumps([corpus_fingerprint(data_specs), tokenizer_key, separator])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- preparing ------------------------------------------------------------------------


def prepare_cached(
    data_specs: Sequence[str],
    tokenizer_spec: str | None,
    cache_root: Path,
    *,
    tokenizer: Tokenizer | None = None,
    separator: str = "eot",
    progress: bool = True,
) -> Path:
    """Prepared data for raw text, made once and reused: returns its folder.

    Either ``tokenizer_spec`` names the tokenizer to train/load, or a ready
    ``tokenizer`` is given (fine-tuning keeps the model's tokenizer).
    """
    spec = tokenizer_spec or DEFAULT_TOKENIZER
    if tokenizer is not None:
        key = cache_key(data_specs, f"fingerprint:{tokenizer.fingerprint()}", separator)
    else:
        key = cache_key(data_specs, tokenizer_fingerprint(spec), separator)
    folder = cache_root / key
    if (folder / META_FILE).is_file():
        return folder
    corpus = corpus_from_specs(list(data_specs))
    if tokenizer is None:
        tokenizer = tokenizer_from_spec(spec, corpus, separator=separator, progress=progress)
    description = ", ".join(data_specs) if data_specs else BUILTIN_CORPUS
    preparing.prepare(
        corpus,
        tokenizer,
        folder,
        separator=separator,
        progress=progress,
        description=description,
    )
    return folder


@dataclass
class TrainingData:
    """What a run trains on: the token arrays, their tokenizer, and how ``run.json`` says so."""

    data: Any  # a PreparedData: .train, .val, .meta, .tokenizer_path
    tokenizer: Tokenizer
    info: dict[str, Any]


def training_data(
    data_specs: Sequence[str],
    tokenizer_spec: str | None,
    out_dir: Path,
    *,
    base_tokenizer: Tokenizer | None = None,
    separator: str = "eot",
    progress: bool = True,
    dist: Any = None,
) -> TrainingData:
    """A prepared folder as it is, or raw text prepared (on rank 0) into the run's cache.

    ``base_tokenizer`` is the tokenizer of the model being fine-tuned, which the
    data must use; ``tokenizer_spec`` must then be unset.
    """

    dist = dist or distributed.DistInfo()
    specs = list(data_specs)
    given = base_tokenizer
    if base_tokenizer is not None and tokenizer_spec:
        raise SettingError(
            "init_from uses the checkpoint's tokenizer; leave tokenizer unset",
            setting="tokenizer",
            reason="tokenizer_with_init_from",
        )
    if len(specs) == 1 and is_prepared_dir(specs[0]):
        folder = Path(specs[0])
        if given is None and tokenizer_spec:
            parsed = parse_tokenizer_spec(tokenizer_spec)
            if parsed.kind != "file":
                raise SettingError(
                    f"{folder} is already tokenized; tokenizer must be its tokenizer file, "
                    f"not {tokenizer_spec!r} (or leave it out)",
                    setting="tokenizer",
                )
            given = load_tokenizer(parsed.path)
    else:
        # Rank 0 prepares (with a progress bar); the others wait, then find the cache.
        cache, options = out_dir / DATA_CACHE, {"tokenizer": given, "separator": separator}
        if dist.is_main:
            folder = prepare_cached(specs, tokenizer_spec, cache, progress=progress, **options)
        distributed.barrier(dist)
        if not dist.is_main:
            folder = prepare_cached(specs, tokenizer_spec, cache, progress=False, **options)
    data = load_prepared(folder)
    tokenizer = given if given is not None else load_tokenizer(data.tokenizer_path)
    check_tokenizer(data, tokenizer)
    info = {
        "data": specs,
        "tokenizer": tokenizer_spec or (None if base_tokenizer else DEFAULT_TOKENIZER),
        "prepared": str(relative_to(folder, out_dir)),
    }
    return TrainingData(data, tokenizer, info)
