"""``tinylm prepare``: encode a corpus once into token files that training memmaps."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tinylm.cli.options import add_doc_sep
from tinylm.data.corpus import BUILTIN_CORPUS, corpus_from_specs
from tinylm.data.hub import load_hub_dataset
from tinylm.errors import TinylmError
from tinylm.terminal import printable
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.formats import load_tokenizer
from tinylm.untrusted_files import describe

#: A corpus argument with this prefix names a Hugging Face dataset: hf:NAME[:SPLIT].
HUB_PREFIX = "hf:"


def register(subparsers: argparse._SubParsersAction) -> None:
    prep = subparsers.add_parser(
        "prepare",
        help="encode a corpus into train/val token files for training",
        description="Encode documents with a tokenizer into DIR/train.bin and DIR/val.bin "
        "(plus meta.json and tokenizer.json), written atomically.",
    )
    prep.add_argument(
        "corpus",
        nargs="*",
        metavar="CORPUS",
        help=f"text files, folders or globs (default: the built-in corpus, {BUILTIN_CORPUS!r}); "
        f"or {HUB_PREFIX}NAME[:SPLIT] for a Hugging Face dataset (needs tinylm[datasets])",
    )
    prep.add_argument(
        "--tokenizer", "-t", required=True, type=Path, metavar="FILE", help="tokenizer file"
    )
    prep.add_argument(
        "--out", "-o", required=True, type=Path, metavar="DIR", help="dataset folder to write"
    )
    prep.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="share held out for validation (default 0.1)",
    )
    add_doc_sep(prep)
    prep.add_argument(
        "--text-field",
        default="text",
        metavar="FIELD",
        help=f"column holding the text ({HUB_PREFIX} corpora only; default: text)",
    )
    prep.add_argument(
        "--workers", type=int, default=None, metavar="N", help="processes (default: all cores)"
    )
    prep.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    prep.set_defaults(run=run_prepare)


def _tokenizer(path: Path) -> Tokenizer:
    """The ``--tokenizer`` file; a missing one gets the command that makes it."""
    if describe(path) == "missing":
        raise TinylmError(
            f"tokenizer file {path} does not exist; train one with "
            f"`tinylm tokenizer train CORPUS --out {path}`"
        )
    return load_tokenizer(path)


def _corpus(specs: list[str], text_field: str) -> tuple[Any, str]:
    """The corpus to encode and how meta.json describes it."""
    hub = [spec for spec in specs if spec.startswith(HUB_PREFIX)]
    if not hub:
        return corpus_from_specs(specs), ", ".join(specs) or BUILTIN_CORPUS
    if len(specs) > 1:
        raise TinylmError(f"give one {HUB_PREFIX}NAME corpus on its own, not mixed with files")

    name, _, split = hub[0][len(HUB_PREFIX) :].partition(":")
    if not name:
        raise TinylmError(f"write {HUB_PREFIX}NAME or {HUB_PREFIX}NAME:SPLIT, e.g. hf:user/data")
    return load_hub_dataset(name, split or "train", text_field=text_field), hub[0]


def run_prepare(args: argparse.Namespace) -> int:
    # numpy-free start-up: every tinylm command imports this module
    from tinylm.data.prepare import prepare

    tokenizer = _tokenizer(args.tokenizer)
    corpus, description = _corpus(args.corpus, args.text_field)
    meta = prepare(
        corpus,
        tokenizer,
        args.out,
        val_fraction=args.val_fraction,
        separator=args.doc_sep,
        workers=args.workers,
        progress=not args.quiet,
        description=description,
    )
    print(printable(summary(meta, args.out)))  # corpus and folder names may hold anything
    return 0


def summary(meta: dict[str, Any], out: Path) -> str:
    """What was written, in a few lines a person can check at a glance."""
    train, val = meta["train"], meta["val"]
    share = f"{meta['split']['val_fraction']:.0%}"
    if meta["split"]["method"] == "documents":
        split = f"{train['documents']:,} train / {val['documents']:,} val"
    else:
        split = f"too few to split whole ones: val is the last {share} of the tokens"
    lines = [
        f"prepared {meta['corpus']} -> {out}",
        f"  documents   {meta['documents']:,} ({split})",
        f"  tokens      {train['tokens']:,} train / {val['tokens']:,} val ({meta['dtype']})",
        f"  tokenizer   {meta['tokenizer']['kind']}, {meta['vocab_size']:,} ids, "
        f"fingerprint {meta['tokenizer']['fingerprint']}",
    ]
    if meta.get("chars_per_token") is not None:
        lines.append(f"  chars/token {meta['chars_per_token']:.2f}")
    if val["tokens"] < 1024:
        lines.append(
            f"  note: val has only {val['tokens']} tokens; evaluation needs more than "
            "block_size of them, so use more text or a larger --val-fraction"
        )
    return "\n".join(lines)
