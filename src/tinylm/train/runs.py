"""A run directory and the things around it: models from checkpoints, cached data.

A run directory (``runs/small`` by default) holds::

    run.json           what was trained: model and train config, data, tokenizer
    metrics.jsonl      one line per step / evaluation / sample
    loss.png           the loss curves
    ckpt-000500/ ...   the last few checkpoints, and best/ (lowest val loss)
    data/<key>/        the tokenizer and prepared data made from raw text, cached

The cache key hashes what decides the token ids (the corpus's identity, the
tokenizer spec, the document separator), so a second run on the same text with
the same tokenizer reuses them, and any change makes a new entry.

These are library functions (no argparse): the CLI calls them, and so can a
notebook (``model, tokenizer, meta = load_model("runs/small")``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinylm.data.corpus import BUILTIN_CORPUS, corpus_from_specs, iter_documents
from tinylm.data.prepared import META_FILE
from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer

DATA_CACHE = "data"


# -- tokenizers -----------------------------------------------------------------------


def load_tokenizer_file(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer file (``tinylm.tokenizers.formats`` when present, else tinylm JSON)."""
    try:
        from tinylm.tokenizers.formats import load_tokenizer
    except ImportError:
        load_tokenizer = None
    if load_tokenizer is not None:
        return load_tokenizer(path)
    return _load_tinylm_json(Path(path))


def _load_tinylm_json(path: Path) -> Tokenizer:
    """Minimal reader of tinylm's own tokenizer JSON (used until ``formats`` exists)."""
    from tinylm.tokenizers.base import check_envelope

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TinylmError(f"cannot read tokenizer {path}: {exc}") from None
    kind = check_envelope(data, str(path))
    if kind == "char":
        from tinylm.tokenizers.char import CharTokenizer

        return CharTokenizer.from_dict(data)
    from tinylm.tokenizers.bpe import BPETokenizer

    return BPETokenizer.from_dict(data)


def parse_tokenizer_spec(spec: str) -> tuple[str, int | Path | None]:
    """``char`` -> ("char", None); ``bpe:N`` -> ("bpe", N); else a file -> ("file", path)."""
    if spec == "char":
        return "char", None
    if spec.startswith("bpe:"):
        try:
            size = int(spec[4:])
        except ValueError:
            size = 0
        if size < 1:
            raise TinylmError(f"bad tokenizer spec {spec!r}; write bpe:N, e.g. bpe:1024")
        return "bpe", size
    path = Path(spec)
    if not path.is_file():
        raise TinylmError(f"tokenizer {spec!r} is not 'char', 'bpe:N' or a tokenizer file")
    return "file", path


def build_tokenizer(
    spec: str, corpus: Any, separator: str = "eot", progress: bool = True
) -> Tokenizer:
    """Train (char, bpe:N) on ``corpus`` or load (file) the tokenizer a spec names."""
    kind, value = parse_tokenizer_spec(spec)
    if kind == "char":
        from tinylm.tokenizers.char import CharTokenizer

        return CharTokenizer.train(corpus, separator=separator)
    if kind == "bpe":
        from tinylm.tokenizers.bpe import BPETokenizer

        documents = iter_documents(corpus, separator)
        return BPETokenizer.train(
            documents, value, special_tokens=("<|endoftext|>",), progress=progress
        )
    return load_tokenizer_file(value)


# -- cache keys -----------------------------------------------------------------------


def corpus_fingerprint(specs: Sequence[str]) -> str:
    """Identity of a raw corpus: built-in text by content; files by path, size and mtime.

    Hashing file contents would read a multi-GB corpus just to find the cache;
    size and modification time change whenever a file is edited.
    """
    digest = hashlib.sha256()
    if not specs or list(specs) == [BUILTIN_CORPUS]:
        for doc in corpus_from_specs([]):
            digest.update(doc.encode("utf-8"))
            digest.update(b"\0")
    else:
        for path in corpus_from_specs(list(specs)):
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def tokenizer_fingerprint(spec: str) -> str:
    """A tokenizer spec's identity; a file by its content."""
    kind, value = parse_tokenizer_spec(spec)
    if kind == "file":
        return "file:" + hashlib.sha256(Path(value).read_bytes()).hexdigest()[:16]
    return spec


def cache_key(data_specs: Sequence[str], tokenizer_key: str, separator: str) -> str:
    text = json.dumps([corpus_fingerprint(data_specs), tokenizer_key, separator])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- data -----------------------------------------------------------------------------


def is_prepared_dir(spec: str) -> bool:
    """A folder written by ``tinylm prepare`` (it has meta.json)."""
    return Path(spec).is_dir() and (Path(spec) / META_FILE).is_file()


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
    from tinylm.data.prepare import prepare

    if tokenizer is not None:
        key = cache_key(data_specs, f"fingerprint:{tokenizer.fingerprint()}", separator)
    else:
        key = cache_key(data_specs, tokenizer_fingerprint(tokenizer_spec or "char"), separator)
    folder = cache_root / key
    if (folder / META_FILE).is_file():
        return folder
    corpus = corpus_from_specs(list(data_specs))
    if tokenizer is None:
        tokenizer = build_tokenizer(tokenizer_spec or "char", corpus, separator, progress)
    description = ", ".join(data_specs) if data_specs else BUILTIN_CORPUS
    prepare(
        corpus,
        tokenizer,
        folder,
        separator=separator,
        progress=progress,
        description=description,
    )
    return folder


# -- checkpoints and runs ----------------------------------------------------------------


def run_has_checkpoints(run_dir: Path) -> bool:
    from tinylm.train.checkpoint import CheckpointManager

    return CheckpointManager(run_dir).latest() is not None


def is_existing_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run worth keeping: one with a checkpoint.

    A folder with only the data cache, or the ``run.json`` and metrics of a start
    that failed before its first checkpoint, can be trained into again (the stale
    metrics are dropped then).
    """
    return run_dir.is_dir() and run_has_checkpoints(run_dir)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """run.json, with every field a resume uses checked (one line for a damaged file)."""
    from tinylm.validate import Record, read_json

    path = run_dir / "run.json"
    hint = "it was damaged or edited; restore it, or start a new run with another folder"
    info = read_json(path, hint, missing=f"{run_dir} has no run.json; it is not a tinylm run")
    record = Record(info, str(path), hint)
    record.dict("model")
    record.dict("train", {})
    record.str("prepared")
    for key in ("tokenizer", "preset", "init_from"):
        if record.has(key) and info[key] is not None:
            record.str(key)
    data = record.list("data", [])
    if not all(isinstance(spec, str) for spec in data):
        raise record.error("data", "a list of paths", data)
    return info


def resolve_model_checkpoint(path: str | os.PathLike, which: str = "latest") -> Path:
    """A checkpoint folder from a checkpoint or run folder (``which``: latest or best)."""
    from tinylm.train.checkpoint import CheckpointManager, resolve_checkpoint

    path = Path(path)
    if which != "best" or (path / "model.safetensors").is_file():
        return resolve_checkpoint(path)  # a checkpoint folder is its own best
    resolve_checkpoint(path)  # a missing or foreign folder gets its usual message
    best = CheckpointManager(path).best()  # a lost best/ is an error, never the latest
    if best is None:
        raise TinylmError(
            f"{path} has no best checkpoint: no evaluation was saved yet; use its latest "
            "checkpoint instead"
        )
    return best


def load_model(
    path: str | os.PathLike, device: str = "cpu", which: str = "latest"
) -> tuple[Any, Tokenizer | None, dict[str, Any]]:
    """``(model, tokenizer, meta)`` from a checkpoint or run folder, weights loaded, eval mode."""
    from tinylm.train.checkpoint import load_checkpoint, read_checkpoint_meta

    folder = resolve_model_checkpoint(path, which)
    meta = read_checkpoint_meta(folder)
    if not isinstance(meta.get("config"), dict):
        raise TinylmError(f"checkpoint {folder} has no model config; it cannot be rebuilt")
    model = model_for_checkpoint(folder, meta["config"])
    load_checkpoint(folder, model)
    model.to(device).eval()
    tokenizer = load_tokenizer_file(meta["tokenizer"]) if meta.get("tokenizer") else None
    return model, tokenizer, meta


def model_for_checkpoint(folder: str | os.PathLike, config: dict[str, Any]) -> Any:
    """A fresh GPT built from ``config``, once the checkpoint's weights are known to fit it.

    The model is first built on torch's ``meta`` device (shapes, no memory) and
    compared with the weights' header, so a config edited to ask for a huge
    vocabulary, or one that does not match the weights, is refused before
    anything is allocated.
    """
    import torch

    from tinylm.model import GPT, ModelConfig
    from tinylm.train.checkpoint import check_fits

    model_config = ModelConfig.from_dict(config)
    with torch.device("meta"):
        skeleton = GPT(model_config)
    check_fits(folder, skeleton)
    return GPT(model_config)
