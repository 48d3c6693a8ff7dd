"""Benchmark BPE training: tinylm's ``train_bpe`` against Hugging Face ``tokenizers``.

Run ``python bench/bench_bpe_train.py`` (about a minute on 2 cores) or add ``--quick``
(tinyshakespeare and the small case only). Both trainers get the same file, vocabulary
size, special token and GPT-2 pre-tokenization regex; HF is configured as
``Split(Regex(gpt2), isolated)`` + ``ByteLevel(use_regex=False)`` with the 256-byte
initial alphabet, i.e. byte-level BPE exactly like ours.

Each training runs in a fresh subprocess, so that its peak memory can be read from
``resource.getrusage``: ``ru_maxrss`` of the process (interpreter and imports
included), and for tinylm also of its largest pre-tokenization worker
(``RUSAGE_CHILDREN``). Time is wall-clock for the training call alone (no
interpreter start-up or imports); the best of ``--repeat`` runs is reported, the two
trainers alternating so that background load hits both alike. CPU seconds (user +
system, all threads and worker processes; the least over the runs) show the work
done, which background load disturbs less than wall time.

"same merges" is how many leading merges are identical. They part ways at the first
tie, which the two break differently (HF by ids, tinylm by bytes), and HF also reads
files line by line, so whitespace at line ends is pre-tokenized slightly differently.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import data_path
from tinylm.workers import default_workers

EOT = "<|endoftext|>"


# -- one training run (in a child process) ----------------------------------------


def train_ours(path: Path, vocab_size: int, limit: int | None) -> tuple[list, float]:
    from tinylm.tokenizers.bpe_train import train_bpe

    corpus = path.read_text(encoding="utf-8")[:limit] if limit else path
    start = time.perf_counter()
    _, merges, _ = train_bpe(corpus, vocab_size, [EOT], "gpt2", progress=False)
    return merges, time.perf_counter() - start


def train_hf(path: Path, vocab_size: int, limit: int | None) -> tuple[list, float]:
    from tinylm.tokenizers.pretokenize import GPT2_PATTERN
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = path.read_text(encoding="utf-8")[:limit] if limit else None
    start = time.perf_counter()
    if text is None:
        tokenizer.train([str(path)], trainer)
    else:
        tokenizer.train_from_iterator([text], trainer)
    seconds = time.perf_counter() - start
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    pairs = [m.split(" ") if isinstance(m, str) else m for m in merges]
    decode = _byte_level_decoder()
    return [(decode(a), decode(b)) for a, b in pairs], seconds


def _byte_level_decoder():
    """Invert GPT-2's bytes -> printable characters table that ByteLevel uses."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    shown = printable + [256 + i for i in range(len(others))]
    table = {chr(c): b for c, b in zip(shown, printable + others, strict=True)}
    return lambda s: bytes(table[c] for c in s)


def cpu_seconds() -> float:
    """User + system time of this process, its threads and its finished children."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def child(args: argparse.Namespace) -> None:
    trainer = train_ours if args.child == "ours" else train_hf
    cpu = cpu_seconds()
    merges, seconds = trainer(Path(args.path), args.vocab, args.limit)
    cpu = cpu_seconds() - cpu  # includes reading the file (and for HF, the merges' JSON)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu": cpu,
                "rss_kb": peak,
                "worker_rss_kb": workers,
                "merges": [[a.hex(), b.hex()] for a, b in merges],
            }
        )
    )


# -- the comparison (parent process) ----------------------------------------------


def run_child(side: str, path: Path, vocab: int, limit: int | None) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        side,
        "--path",
        str(path),
        "--vocab",
        str(vocab),
    ]
    if limit:
        command += ["--limit", str(limit)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{side} training failed:\n{done.stderr}")
    return json.loads(done.stdout)


def bench_case(name: str, path: Path, vocab: int, limit: int | None, repeat: int) -> dict:
    runs: dict[str, list[dict]] = {"ours": [], "hf": []}
    for _ in range(repeat):
        for side in runs:
            runs[side].append(run_child(side, path, vocab, limit))
    best = {side: min(results, key=lambda r: r["seconds"]) for side, results in runs.items()}
    ours, hf = best["ours"], best["hf"]
    same = 0
    for a, b in zip(ours["merges"], hf["merges"], strict=False):
        if a != b:
            break
        same += 1
    size = limit or os.path.getsize(path)
    return {
        "case": name,
        "bytes": size,
        "vocab": vocab,
        "ours_s": ours["seconds"],
        "hf_s": hf["seconds"],
        "ours_cpu": min(r["cpu"] for r in runs["ours"]),
        "hf_cpu": min(r["cpu"] for r in runs["hf"]),
        "ours_rss": max(r["rss_kb"] for r in runs["ours"]),
        "ours_worker_rss": max(r["worker_rss_kb"] for r in runs["ours"]),
        "hf_rss": max(r["rss_kb"] for r in runs["hf"]),
        "same": same,
        "merges": len(ours["merges"]),
    }


def print_table(rows: list[dict], repeat: int) -> None:
    print(
        f"\nBPE training, best of {repeat}; {default_workers()} CPUs, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| corpus | size | vocab | tinylm (s) | HF tokenizers (s) | ratio tinylm/HF "
        "| CPU s tinylm / HF | peak RSS tinylm main / worker (MB) | peak RSS HF (MB) "
        "| same merges |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['bytes'] / 1e6:.1f} MB | {r['vocab']:,} | {r['ours_s']:.2f} "
            f"| {r['hf_s']:.2f} | **{r['ours_s'] / r['hf_s']:.2f}x** "
            f"| {r['ours_cpu']:.2f} / {r['hf_cpu']:.2f} "
            f"| {r['ours_rss'] / 1024:.0f} / {r['ours_worker_rss'] / 1024:.0f} "
            f"| {r['hf_rss'] / 1024:.0f} | first {r['same']:,} of {r['merges']:,} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tinyshakespeare and small case")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; best is kept")
    parser.add_argument("--child", choices=("ours", "hf"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    shakespeare = data_path("corpora/tinyshakespeare.txt")
    cases = [
        ("tinyshakespeare, first 300 KB (in-process)", shakespeare, 500, 300_000),
        ("tinyshakespeare", shakespeare, 4096, None),
    ]
    if not args.quick:
        cases.append(
            ("gutenberg_en_books", data_path("corpora/gutenberg_en_books.txt"), 10_000, None)
        )
    rows = []
    for name, path, vocab, limit in cases:
        print(f"{name}: vocab {vocab} ...", file=sys.stderr, flush=True)
        rows.append(bench_case(name, path, vocab, limit, args.repeat))
    print_table(rows, args.repeat)


if __name__ == "__main__":
    main()
