"""Batch BPE encoding in a pool of processes (``BPETokenizer.encode_batch``).

Processes, not threads: the pre-tokenizer runs on ``re``, which holds the GIL,
so threads would take turns (measured: no faster than one thread). Worker
processes are forked, so they start in milliseconds with the tokenizer and its
cache already in memory, and ids come back as packed arrays, which pickle far
faster than lists of ints. Batches under :data:`_MIN_JOB_CHARS` characters
(where a pool costs more than it saves), one worker, platforms other than Linux,
and processes running other threads (forking those can deadlock) are encoded in
the calling process instead. Every id equals what ``encode`` gives.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
from array import array
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinylm.tokenizers.bpe import BPETokenizer

#: Each worker gets jobs of at least this many characters (so a smaller batch
#: stays in-process): below it, a process costs more than it saves.
_MIN_JOB_CHARS = 1 << 19
#: array typecode for ids: unsigned and at least 4 bytes.
_ID_TYPECODE = "I" if array("I").itemsize >= 4 else "L"

Job = list[tuple[str, frozenset[str]]]


def encode_in_pool(tokenizer: BPETokenizer, items: Job, workers: int) -> list[list[int]]:
    """Encode ``(text, allowed special names)`` items in order, in processes when it pays."""
    jobs = _split_jobs(items, workers) if workers > 1 and _can_fork() else [items]
    if len(jobs) < 2:
        return [tokenizer.encode_with_specials(text, allowed) for text, allowed in items]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        min(workers, len(jobs)), mp_context=context, initializer=_adopt, initargs=(tokenizer,)
    ) as pool:
        packed = list(pool.map(_encode_job, jobs))
    return [ids.tolist() for job in packed for ids in job]


def _split_jobs(items: Job, workers: int) -> list[Job]:
    """Cut a batch, in order, into jobs of similar size: about 4 per worker, so one
    slow job does not leave the other workers idle, but none under _MIN_JOB_CHARS."""
    total = sum(len(text) for text, _ in items)
    target = max(_MIN_JOB_CHARS, total // (4 * workers) + 1)
    jobs: list[Job] = [[]]
    size = 0
    for item in items:
        if size >= target:
            jobs.append([])
            size = 0
        jobs[-1].append(item)
        size += len(item[0])
    return jobs


def _can_fork() -> bool:
    """Forking is fast and keeps the tokenizer's memory, but safe only without threads."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


#: The tokenizer a worker process encodes with (set by ``_adopt`` when it starts).
_WORKER_TOKENIZER: BPETokenizer | None = None


def _adopt(tokenizer: BPETokenizer) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer


def _encode_job(job: Job) -> list[array]:
    """Encode one job in a worker, packing each text's ids into an array."""
    assert _WORKER_TOKENIZER is not None
    encode = _WORKER_TOKENIZER.encode_with_specials
    return [array(_ID_TYPECODE, encode(text, allowed)) for text, allowed in job]
