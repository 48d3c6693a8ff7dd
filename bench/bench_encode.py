"""Benchmark BPE encoding: tinylm's GPT-2 tokenizer against tiktoken's, same text, same run.

Run ``python bench/bench_encode.py`` (34 MB of Project Gutenberg books; a few minutes
on 2 busy cores) or add ``--quick`` (a 4 MB prefix). Both tokenizers are built from the
same ``gpt2.tiktoken`` rank file, and the ids are checked to be identical before
anything is timed.

Rows:

- **single-thread**: ``encode_ordinary(text)`` on the whole text, both sides. tinylm
  starts each repeat with a freshly loaded tokenizer, so its pre-token cache is cold
  and the time includes running BPE on every distinct pre-token once.
- **single-thread, warm cache**: the same call again on that tokenizer (a long
  training data preparation runs mostly in this state).
- **batched**: the text split into documents at ``<|endoftext|>``; tinylm's
  ``encode_batch`` (forked worker processes, one per CPU, cold cache) against
  tiktoken's ``encode_ordinary_batch`` (8 threads, its default).

Throughput is MB of UTF-8 text per second of wall-clock time; the best of
``--repeat`` runs is kept, the two libraries alternating so that background load
hits both alike. The ratio is tinylm / tiktoken (1.0 = as fast as tiktoken).
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _common import data_path
from tinylm.workers import default_workers

EOT = "<|endoftext|>"
QUICK_CHARS = 4_000_000


def load_pair(path: Path):
    """tinylm's and tiktoken's GPT-2 from the same rank file."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from tinylm.tokenizers.formats import load_tokenizer
    from tinylm.tokenizers.pretokenize import GPT2_PATTERN

    reference = tiktoken.Encoding(
        name="gpt2_bench",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(path)),
        special_tokens={EOT: 50256},
    )
    return (lambda: load_tokenizer(path)), reference


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"first {QUICK_CHARS:,} characters")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--workers", type=int, default=None, help="processes for encode_batch")
    args = parser.parse_args()

    corpus = data_path("corpora/gutenberg_en_books.txt")
    text = corpus.read_text(encoding="utf-8")
    if args.quick:
        text = text[:QUICK_CHARS]
    documents = text.split(EOT)
    megabytes = len(text.encode("utf-8")) / 1e6
    batch_megabytes = sum(len(d.encode("utf-8")) for d in documents) / 1e6

    new_tokenizer, reference = load_pair(data_path("vocab/gpt2.tiktoken"))
    tok = new_tokenizer()
    expected = reference.encode_ordinary(text)
    if tok.encode_ordinary(text) != expected:
        raise SystemExit("tinylm's ids differ from tiktoken's: fix that before timing")
    if tok.encode_batch(documents) != reference.encode_ordinary_batch(documents):
        raise SystemExit("tinylm's batched ids differ from tiktoken's")

    times: dict[str, list[float]] = {}

    def record(key: str, seconds: float) -> None:
        times.setdefault(key, []).append(seconds)

    for _ in range(args.repeat):
        record("tiktoken single", timed(partial(reference.encode_ordinary, text)))
        tok = new_tokenizer()  # cold cache
        record("tinylm single", timed(partial(tok.encode_ordinary, text)))
        record("tinylm warm", timed(partial(tok.encode_ordinary, text)))
        record("tiktoken warm", timed(partial(reference.encode_ordinary, text)))
        record("tiktoken batch", timed(partial(reference.encode_ordinary_batch, documents)))
        tok = new_tokenizer()
        record("tinylm batch", timed(partial(tok.encode_batch, documents, workers=args.workers)))

    def row(label: str, ours: str, theirs: str, size: float) -> str:
        ours_speed = size / min(times[ours])
        their_speed = size / min(times[theirs])
        return (
            f"| {label} | {ours_speed:.2f} | {their_speed:.2f} | {ours_speed / their_speed:.2f} |"
        )

    workers = args.workers or default_workers()
    print(
        f"\n{corpus.name}: {megabytes:.1f} MB{' (--quick prefix)' if args.quick else ''}, "
        f"{len(documents)} documents; best of {args.repeat}; Python {platform.python_version()}, "
        f"{default_workers()} CPUs\n"
    )
    print("| mode | tinylm MB/s | tiktoken MB/s | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(row("single-thread (cold cache)", "tinylm single", "tiktoken single", megabytes))
    print(row("single-thread, warm cache", "tinylm warm", "tiktoken warm", megabytes))
    print(
        row(
            f"batched ({workers} processes vs tiktoken's 8 threads)",
            "tinylm batch",
            "tiktoken batch",
            batch_megabytes,
        )
    )


if __name__ == "__main__":
    main()
