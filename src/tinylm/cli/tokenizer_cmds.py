"""``tinylm tokenizer train`` and ``tinylm tokenize``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tinylm.cli.options import add_doc_sep
from tinylm.cli.output import say
from tinylm.data.corpus import BUILTIN_CORPUS, corpus_from_specs, iter_documents
from tinylm.errors import TinylmError
from tinylm.inspect.tokens import (
    SEED_EXAMPLES,
    chars_per_token,
    compare_table,
    encode_shown,
    render_tokens,
    token_pieces,
)
from tinylm.terminal import printable
from tinylm.tokenizers.base import Tokenizer, check_save_path
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.spec import DEFAULT_SPECIALS, tokenizer_from_spec

BPE_VOCAB = 1024
#: Options that only mean something for BPE; giving one with --kind char is a mistake.
BPE_ONLY = {"vocab_size": "--vocab-size", "pattern": "--pattern", "special": "--special"}


def register(subparsers: argparse._SubParsersAction) -> None:
    tok = subparsers.add_parser("tokenizer", help="train a tokenizer")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    tok_sub.required = True
    train = tok_sub.add_parser(
        "train", help="train a BPE or char tokenizer on a corpus and save it as JSON"
    )
    train.add_argument(
        "corpus",
        nargs="*",
        metavar="CORPUS",
        help=f"text files, folders or globs (default: the built-in corpus, {BUILTIN_CORPUS!r})",
    )
    train.add_argument("--kind", choices=("bpe", "char"), default="bpe")
    train.add_argument(
        "--unknown",
        choices=("error", "reserve"),
        default="error",
        help="char tokenizer: an unseen character is an error (default) or a reserved UNK id",
    )
    train.add_argument(
        "--vocab-size", type=int, default=None, help=f"BPE vocabulary size (default {BPE_VOCAB})"
    )
    train.add_argument(
        "--special",
        action="append",
        metavar="TOKEN",
        help="special token (repeatable; default <|endoftext|>)",
    )
    train.add_argument("--no-specials", action="store_true", help="train without special tokens")
    train.add_argument(
        "--pattern", default=None, help="pre-tokenizer: gpt2 (default), cl100k, o200k or a regex"
    )
    add_doc_sep(train)
    train.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    train.add_argument("--out", required=True, type=Path, help="where to write the tokenizer")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=run_train)

    show = subparsers.add_parser(
        "tokenize", help="show how text is tokenized, and compare tokenizers side by side"
    )
    show.add_argument("text", nargs="*", help=f"text to tokenize (default: {SEED_EXAMPLES})")
    show.add_argument(
        "--tokenizer",
        "-t",
        action="append",
        metavar="SPEC",
        help="a tokenizer file (tinylm .json, .tiktoken, GPT-2 encoder.json), 'char', or "
        "'bpe:N' (trained on the corpus); repeat to compare (default: char and bpe:1024)",
    )
    show.add_argument(
        "--corpus",
        action="append",
        metavar="PATH",
        help="corpus for 'char'/'bpe:N' and for characters per token (default: built-in)",
    )
    show.add_argument("--pattern", default=None, help="pattern for a .tiktoken file")
    show.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    show.set_defaults(run=run_tokenize)


def _use_color(choice: str) -> bool:
    if choice == "auto":
        return sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return choice == "always"


def run_train(args: argparse.Namespace) -> int:
    if args.kind == "char":
        given = [flag for key, flag in BPE_ONLY.items() if getattr(args, key) is not None]
        if given:
            raise TinylmError(f"{', '.join(given)} only apply to BPE; drop them or use --kind bpe")
    if args.no_specials and args.special:
        raise TinylmError("--no-specials and --special contradict each other; give one of them")
    check_save_path(args.out)  # before training, not after it
    corpus = corpus_from_specs(args.corpus)
    specials = () if args.no_specials else tuple(args.special or DEFAULT_SPECIALS)
    start = time.perf_counter()
    tokenizer: Tokenizer
    if args.kind == "char":
        tokenizer = CharTokenizer.train(corpus, unknown=args.unknown, separator=args.doc_sep)
    else:
        documents = corpus if args.doc_sep == "eot" else iter_documents(corpus, args.doc_sep)
        tokenizer = BPETokenizer.train(
            documents,
            BPE_VOCAB if args.vocab_size is None else args.vocab_size,
            special_tokens=specials,
            pattern="gpt2" if args.pattern is None else args.pattern,
            workers=args.workers,
            progress=not args.quiet,
        )
    elapsed = time.perf_counter() - start
    tokenizer.save(args.out)
    print(f"trained a {args.kind} tokenizer: {tokenizer.vocab_size} ids in {elapsed:.2f} s")
    asked = BPE_VOCAB if args.vocab_size is None else args.vocab_size
    if args.kind == "bpe" and tokenizer.vocab_size < asked:
        print(
            f"(fewer than the {asked} asked: the corpus has no more pairs to merge; "
            "give more text for a larger vocabulary)"
        )
    say(f"saved to {args.out}")
    sample = next(iter(iter_documents(corpus, args.doc_sep)), "")[:240]
    if not sample:
        return 0
    print("\nhow it tokenizes the start of the corpus:")
    ids = encode_shown(tokenizer, sample)
    print(render_tokens(token_pieces(tokenizer, ids), color=_use_color("auto")))
    print(f"{len(sample)} characters -> {len(ids)} tokens")
    return 0


def spec_label(spec: str) -> str:
    """A short column name: the file name for files, the spec itself otherwise (shown safely)."""
    return printable(Path(spec).name if Path(spec).is_file() else spec, one_line=True)


def run_tokenize(args: argparse.Namespace) -> int:
    corpus = corpus_from_specs(args.corpus or [])
    specs = args.tokenizer or ["char", "bpe:1024"]
    # A viewer shows every character: a char tokenizer's unseen ones appear as <UNK>.
    tokenizers = {
        spec_label(spec): tokenizer_from_spec(spec, corpus, unknown="reserve", pattern=args.pattern)
        for spec in specs
    }
    texts = args.text or list(SEED_EXAMPLES)
    color = _use_color(args.color)
    for name, tokenizer in tokenizers.items():
        print(f"== {name} ({tokenizer.vocab_size} ids)")
        for text in texts:
            ids = encode_shown(tokenizer, text)
            print(f"  {render_tokens(token_pieces(tokenizer, ids), color)}")
            print(f"  ids {ids}  ({len(ids)} tokens, {len(text)} characters)")
    if len(tokenizers) > 1 or len(texts) > 1:
        print("\ntokens per text:")
        print(compare_table(tokenizers, texts))
    print("\ncharacters per token on the corpus:")
    documents = list(iter_documents(corpus))
    for name, tokenizer in tokenizers.items():
        try:
            print(f"  {name}: {chars_per_token(tokenizer, documents):.2f}")
        except TinylmError as exc:
            # A char tokenizer trained on other text cannot encode this corpus; that
            # is no reason to fail after the user's own texts were shown.
            say(f"  {name}: n/a, it cannot encode the corpus: {exc}")
    return 0
