"""Count the distinct pre-tokens of a corpus: streamed, in chunks, in parallel when it pays.

BPE training needs only how often each distinct pre-token occurs (``" the"`` ->
41,000, ...), never the text itself. So the corpus is read in chunks of about
:data:`CHUNK_BYTES`; each chunk is cut out of its document, split on the special
tokens, pre-tokenized and counted on its own, and only the merged counts are
kept. Memory therefore grows with the vocabulary of the corpus, not its size.

Chunks are counted in worker processes once the corpus has shown itself to be at
least :data:`PARALLEL_MIN_BYTES` long; below that, starting processes costs more
than it saves, so small corpora are counted in this process.

Where a chunk may be cut
------------------------
Cutting a document in two must not change its pre-tokens, or counting chunks
would differ from counting the whole. In order of preference, a file is cut:

1. just before a special token (unless another occurrence overlaps it, as in
   ``"aaa"`` for a special ``"aa"``). Pre-tokens never span special tokens, so
   this is exact for every pattern.
2. after a newline between two ASCII characters, ``X\\nY`` (``X`` printable,
   ``Y`` a letter or digit), or failing that
3. between a printable ASCII character and a space followed by one, ``X| Y``.

Rules 2 and 3 are exact for the built-in patterns (gpt2, cl100k, o200k): none of
their alternatives lets a pre-token run on past ``X\\n`` into a letter or digit,
or past ``X`` into a following space, and none looks behind, so the pre-token
boundary is there whether or not the text goes on. (A whitespace run right before
a cut would not be safe: ``\\s++$`` matches it differently at the end of a chunk,
which is why both rules ask for a non-space ``X``.) A *custom* pattern may cross
such a place, e.g. one that glues lines together; for it, chunked counting can
differ slightly from counting whole documents. Documents given as separate
strings are never cut below :data:`CHUNK_BYTES`.

A stretch with no cut place at all (megabytes without a special token, newline
or space) is held whole until one appears.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import queue
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

import regex

from tinylm.errors import TinylmError
from tinylm.progress import progress_bar
from tinylm.tokenizers.pretokenize import pretokenizer, split_on_specials

if TYPE_CHECKING:
    from tqdm import tqdm

#: Target size of one unit of work. Big enough that per-chunk costs (sending it to a
#: worker, finding a cut) are negligible next to the regex; small enough to stream
#: and to spread the work evenly over the workers.
CHUNK_BYTES = 1 << 20

#: Below this many bytes the corpus is counted in-process. Starting workers and
#: sending their counts back costs ~50 ms; measured on 2 cores, two workers first
#: beat one process at 3-4 MB of English text (2 MB: 0.27 s vs 0.23 s; 4 MB: 0.26 s
#: vs 0.39 s).
PARALLEL_MIN_BYTES = 3 << 20

#: Chunks queued for the workers but not yet taken, per worker: enough to keep
#: every worker busy, few enough that a huge corpus is never read far ahead.
_IN_FLIGHT_PER_WORKER = 2

Corpus = str | os.PathLike | Iterable[str | os.PathLike]

#: The cut rules 2 and 3 of the module docstring, searched right to left: the text
#: around the cut, and where in it the cut falls.
_CUT_RULES = (
    (regex.compile(rb"(?r)[!-~]\n[0-9A-Za-z]"), 2),  # X\n|Y
    (regex.compile(rb"(?r)[!-~] [!-~]"), 1),  # X| Y
)


class Chunk(NamedTuple):
    """One unit of counting work: whole small documents, or a UTF-8 slice of one."""

    texts: list[str] | None  #: whole documents, or None when ``data`` holds the text
    data: bytes  #: a UTF-8 slice of a file or of a large document
    source: str  #: where ``data`` comes from, for error messages
    offset: int  #: byte offset of ``data`` in its source
    nbytes: int  #: size of the text in UTF-8 bytes (for progress and the empty check)


def count_pretokens(
    corpus: Corpus,
    pattern: str,
    special_tokens: Sequence[str] = (),
    *,
    workers: int = 1,
    progress: bool = False,
) -> tuple[Counter[str], int]:
    """Count every pre-token of ``corpus``; return ``(counts, total_bytes)``.

    ``pattern`` is a regex (already resolved); occurrences of ``special_tokens`` are
    cut out first and not counted. The result does not depend on ``workers``.
    """
    specials = tuple(special_tokens)
    size = _known_size(corpus)
    if size is not None:  # no more workers than chunks
        workers = min(workers, -(-size // CHUNK_BYTES))
    chunks = iter_chunks(corpus, specials, CHUNK_BYTES)
    head: list[Chunk] = []
    seen = 0
    for chunk in chunks:
        head.append(chunk)
        seen += chunk.nbytes
        if seen >= PARALLEL_MIN_BYTES:
            break
    work = chain(head, chunks)
    with progress_bar(
        progress, total=size, desc="pre-tokenizing", unit="B", unit_scale=True
    ) as bar:
        done = _Progress(bar)
        if workers > 1 and seen >= PARALLEL_MIN_BYTES:
            counts = _count_in_workers(work, pattern, specials, workers, done)
        else:
            counts = Counter()
            for chunk in work:
                count_chunk(chunk, pattern, specials, counts)
                done.add(chunk.nbytes)
    return counts, done.nbytes


class _Progress:
    """Bytes counted so far, shown on the bar (a disabled tqdm bar counts nothing)."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar
        self.nbytes = 0

    def add(self, nbytes: int) -> None:
        self.nbytes += nbytes
        self.bar.update(nbytes)


def count_chunk(
    chunk: Chunk, pattern: str, specials: tuple[str, ...], counts: Counter[str]
) -> None:
    """Pre-tokenize one chunk and add its pre-tokens to ``counts``."""
    texts = chunk.texts if chunk.texts is not None else [_decode(chunk)]
    findall = pretokenizer(pattern)
    for text in texts:
        for piece, is_special in split_on_specials(text, specials):
            if not is_special:
                counts.update(findall(piece))


# -- counting in worker processes ----------------------------------------------
#
# Each worker keeps one running Counter and sends it back once, at the end. (With
# a Pool, every chunk's counts would travel back and be merged here, in the main
# process: about a second of CPU for 34 MB, taken from the workers on a small
# machine.) The task queue is bounded, so the corpus is read only as fast as the
# workers count it.

_DONE = None  # task that tells a worker to send its counts and stop


def _count_in_workers(
    chunks: Iterator[Chunk],
    pattern: str,
    specials: tuple[str, ...],
    workers: int,
    done: _Progress,
) -> Counter[str]:
    context = multiprocessing.get_context()
    tasks = context.Queue(maxsize=_IN_FLIGHT_PER_WORKER * workers)
    results = context.Queue()
    processes = [
        context.Process(target=_worker, args=(tasks, results, pattern, specials), daemon=True)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        total: Counter[str] = Counter()
        for task in chain(chunks, [_DONE] * workers):
            while not _offer(tasks, task):
                _handle(_poll(results, processes), done, total)
            while not results.empty():
                _handle(results.get(), done, total)
        finished = 0
        while finished < workers:
            finished += _handle(_poll(results, processes), done, total)
        return total
    finally:
        for process in processes:
            if process.is_alive():  # only after an error: normally all have finished
                process.kill()
            process.join()
        tasks.cancel_join_thread()  # don't wait to flush tasks nobody will read
        tasks.close()
        results.close()


def _worker(tasks, results, pattern: str, specials: tuple[str, ...]) -> None:
    """Worker process: count chunks until told to stop, then send the counts back."""
    counts: Counter[str] = Counter()
    try:
        while (chunk := tasks.get()) is not _DONE:
            count_chunk(chunk, pattern, specials, counts)
            results.put(("bytes", chunk.nbytes))
    except TinylmError as exc:
        results.put(("error", exc))
    except BaseException as exc:  # e.g. MemoryError: pass it on, readably
        results.put(("error", RuntimeError(f"pre-tokenization worker failed: {exc!r}")))
    else:
        results.put(("counts", counts))


def _offer(tasks, task) -> bool:
    try:
        tasks.put(task, timeout=0.05)
    except queue.Full:
        return False
    return True


def _poll(results, processes: list) -> tuple[str, object]:
    """The next message from the workers; fail if a worker died without one."""
    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(
                    f"a pre-tokenization worker died (exit code {dead[0]}); "
                    "out of memory? try fewer workers"
                ) from None


def _handle(message: tuple[str, object], done: _Progress, total: Counter[str]) -> int:
    """Apply one worker message; return 1 when it was a worker's final counts."""
    kind, value = message
    if kind == "error":
        raise value  # type: ignore[misc]
    if kind == "bytes":
        done.add(value)  # type: ignore[arg-type]
        return 0
    total.update(value)  # type: ignore[arg-type]
    return 1


# -- reading the corpus as chunks ----------------------------------------------


def iter_chunks(corpus: Corpus, specials: Sequence[str], chunk_bytes: int) -> Iterator[Chunk]:
    """Cut ``corpus`` into chunks of about ``chunk_bytes``, never across a pre-token.

    Small documents are batched together (each stays whole); files and documents
    larger than ``chunk_bytes`` are cut at the places the module docstring lists.
    """
    if isinstance(corpus, (bytes, bytearray)):
        raise TinylmError(
            "corpus must be str (text), a Path (file) or an iterable of them, got bytes; "
            "decode it first"
        )
    items = (corpus,) if isinstance(corpus, (str, os.PathLike)) else corpus
    special_bytes = [s.encode("utf-8") for s in specials]
    batch: list[str] = []
    batch_bytes = 0
    for number, item in enumerate(items):
        if isinstance(item, str):
            data = _encode(item, number)
            if len(data) > chunk_bytes:
                yield from _cut_stream(
                    io.BytesIO(data), f"document {number}", special_bytes, chunk_bytes
                )
                continue
            batch.append(item)
            batch_bytes += len(data)
            if batch_bytes >= chunk_bytes:
                yield Chunk(batch, b"", "", 0, batch_bytes)
                batch, batch_bytes = [], 0
        elif isinstance(item, os.PathLike):
            yield from _file_chunks(Path(item), special_bytes, chunk_bytes)
        else:
            raise TinylmError(
                f"corpus items must be str (text) or Path (file), got {type(item).__name__}"
            )
    if batch:
        yield Chunk(batch, b"", "", 0, batch_bytes)


def _file_chunks(path: Path, specials: list[bytes], chunk_bytes: int) -> Iterator[Chunk]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, errors named
    except OSError as exc:
        raise TinylmError(
            f"cannot read corpus file {path}: {exc.strerror or exc}; check the path"
        ) from None
    with handle:
        try:
            yield from _cut_stream(handle, str(path), specials, chunk_bytes)
        except OSError as exc:
            raise TinylmError(f"cannot read corpus file {path}: {exc.strerror or exc}") from None


def _cut_stream(
    stream: BinaryIO, source: str, specials: list[bytes], chunk_bytes: int
) -> Iterator[Chunk]:
    """Read ``stream`` in blocks and yield it as chunks cut only at safe places."""
    offset = 0
    pending = b""
    while block := stream.read(chunk_bytes):
        buffer = pending + block
        cut = find_cut(buffer, specials)
        if cut <= 0:  # no safe place yet: keep reading
            pending = buffer
            continue
        yield Chunk(None, buffer[:cut], source, offset, cut)
        offset += cut
        pending = buffer[cut:]
    if pending:
        yield Chunk(None, pending, source, offset, len(pending))


def find_cut(buffer: bytes, specials: Sequence[bytes] = ()) -> int:
    """A place in the second half of ``buffer`` where it may be cut, or -1.

    Looks in the second half only, so that chunks stay at least half the block size.
    """
    low = len(buffer) // 2
    at_special = max((buffer.rfind(s, low) for s in specials), default=-1)
    if at_special > 0 and not _inside_special(buffer, at_special, specials):
        return at_special
    # A special token may begin in the last few bytes and end in the next block; a
    # cut at most `high` is either outside it or inside a complete, visible one.
    high = len(buffer) - max((len(s) for s in specials), default=0)
    for rule, offset in _CUT_RULES:
        end = len(buffer)
        while (match := rule.search(buffer, low, end)) is not None:
            cut = match.start() + offset
            if cut <= high and not _inside_special(buffer, cut, specials):
                return cut
            end = match.end() - 1  # the next candidate to the left may overlap this one
    return -1


def _inside_special(buffer: bytes, cut: int, specials: Sequence[bytes]) -> bool:
    """Whether some occurrence of a special token starts before ``cut`` and ends after."""
    return any(buffer.find(s, max(0, cut - len(s) + 1), cut + len(s) - 1) != -1 for s in specials)


def _encode(text: str, number: int) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TinylmError(
            f"corpus document {number} is not valid Unicode (lone surrogate at character "
            f"{exc.start}); clean the text before training"
        ) from None


def _decode(chunk: Chunk) -> str:
    try:
        return chunk.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TinylmError(
            f"{chunk.source} is not valid UTF-8 (bad byte at offset {chunk.offset + exc.start}); "
            "convert it to UTF-8"
        ) from None


def _known_size(corpus: Corpus) -> int | None:
    """Total bytes for the progress bar, when knowable without reading the corpus."""
    items = (corpus,) if isinstance(corpus, (str, os.PathLike)) else corpus
    if not isinstance(items, (tuple, list)):
        return None  # a generator: looking would consume it
    total = 0
    for item in items:
        if isinstance(item, str):
            total += len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, os.PathLike):
            try:
                total += os.path.getsize(item)
            except OSError:
                return None  # reported properly when the file is read
        else:
            return None
    return total
