"""Batches: token arrays to ``(x, y)`` tensors, drawn so that resume and DDP are exact.

A training example is a window of ``block_size + 1`` consecutive tokens starting
at a random offset: the first ``block_size`` are the input ``x``, the same window
shifted by one is the target ``y`` (the next token at every position). Every
sampler below is a way of choosing offsets; :func:`gather_windows` cuts the
windows and :func:`to_device` moves them, once for all of them.

All the offsets of one optimiser step are drawn in a single call from one
``torch.Generator``: ``grad_accum * world_size * batch_size`` of them. Micro-step
``m`` of rank ``r`` then takes its own slice (:class:`StepBatches`). Three
properties follow, and the tests rely on each:

* The generator's state *is* the data position: saving it in a checkpoint and
  restoring it makes a resumed run draw the very batches it would have drawn.
* Every rank seeds the generator identically and draws the same offsets, then
  keeps a disjoint slice, so one process with ``world_size`` times the batch sees
  exactly the union of what the ranks see.
* How a step's examples are split into micro-batches (gradient accumulation) or
  across ranks does not change which examples the step contains.

:func:`get_batch` is the one-batch form for notebooks; :func:`fixed_batches`
serves evaluation (the same batches every time), :func:`sequential_batches` a
full pass over a split, and :func:`get_document_batch` microgpt-style training on
whole short documents, padded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from tinylm.check_values import is_int
from tinylm.errors import SettingError, TinylmError

#: Target value the cross-entropy loss ignores (``torch.nn.functional.cross_entropy``).
IGNORE_INDEX = -100

TokenArray = Sequence[int] | np.ndarray | Tensor


def num_windows(data: TokenArray, block_size: int) -> int:
    """How many distinct start offsets a token array offers for ``block_size + 1`` windows."""
    return len(data) - block_size


def check_long_enough(
    data: TokenArray,
    block_size: int,
    name: str,
    hint: str | None = None,
) -> None:
    """The data (``name`` says which, e.g. "validation split") must hold one full window.

    The default ``hint`` is to give more text or lower ``block_size`` (a
    :class:`SettingError` naming it); a ``hint`` of the caller's replaces that,
    for data whose model is already made (evaluation).
    """
    if num_windows(data, block_size) >= 1:
        return
    message = (
        f"need at least block_size + 1 = {block_size + 1} tokens for a batch, the {name} "
        f"has {len(data)} tokens; {hint or 'give more text or a smaller block_size'}"
    )
    if hint is None:
        raise SettingError(message, setting="block_size")
    raise TinylmError(message)


def draw_offsets(n_windows: int, count: int, generator: torch.Generator | None) -> Tensor:
    """``count`` random window starts in ``[0, n_windows)``, one generator call.

    ``generator=None`` draws from torch's global generator.
    """
    return torch.randint(n_windows, (count,), generator=generator)


def rank_shares(
    picks: Tensor, grad_accum: int, batch_size: int, rank: int, world_size: int
) -> list[Tensor]:
    """This rank's ``batch_size`` picks for each of a step's ``grad_accum`` micro-batches.

    Every rank draws the whole step (``grad_accum * batch_size * world_size`` picks,
    one generator call) and keeps its own slice of each micro-batch, so all ranks
    stay in step and together see exactly what one process would.
    """
    per_micro = batch_size * world_size
    starts = [micro * per_micro + rank * batch_size for micro in range(grad_accum)]
    return [picks[start : start + batch_size] for start in starts]


def to_device(x: Tensor, y: Tensor, device: str | torch.device) -> tuple[Tensor, Tensor]:
    """Move a batch to ``device``: the one place a batch leaves host memory."""
    device = torch.device(device)
    x, y = x.contiguous(), y.contiguous()
    if device.type == "cuda":
        # Pinned host memory lets the copy overlap with the GPU still computing.
        return (
            x.pin_memory().to(device, non_blocking=True),
            y.pin_memory().to(device, non_blocking=True),
        )
    return x.to(device), y.to(device)


def gather_windows(
    data: np.ndarray | Tensor, offsets: Tensor, block_size: int, device: str | torch.device
) -> tuple[Tensor, Tensor]:
    """Inputs ``x`` and next-token targets ``y``, both ``(len(offsets), block_size)`` int64."""
    if isinstance(data, Tensor):
        rows = torch.stack([data[int(o) : int(o) + block_size + 1] for o in offsets])
        windows = rows.to(torch.int64)
    else:
        rows = np.stack([data[int(o) : int(o) + block_size + 1] for o in offsets])
        windows = torch.from_numpy(rows.astype(np.int64))
    return to_device(windows[:, :-1], windows[:, 1:], device)


def get_batch(
    data: np.ndarray | Tensor,
    batch_size: int,
    block_size: int,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Random windows of ``block_size + 1`` tokens: inputs ``x`` and next-token targets ``y``.

    Both are int64 ``(batch_size, block_size)``; ``y`` is ``x`` shifted left by one.
    The start offsets come from ``generator`` (a CPU ``torch.Generator``; the
    global torch RNG when ``None``), so saving and restoring its state continues
    the exact same batch sequence.
    """
    check_long_enough(data, block_size, "data", hint="use more text or a smaller block_size")
    offsets = draw_offsets(num_windows(data, block_size), batch_size, generator)
    return gather_windows(data, offsets, block_size, device)


class StepBatches:
    """The micro-batches of each optimiser step, for one rank.

    ``next_step()`` draws the whole step's offsets and returns this rank's
    ``grad_accum`` micro-batches, each ``(batch_size, block_size)``.
    """

    def __init__(
        self,
        data: np.ndarray | Tensor,
        block_size: int,
        batch_size: int,
        grad_accum: int = 1,
        *,
        rank: int = 0,
        world_size: int = 1,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> None:
        check_long_enough(data, block_size, "training split")
        self.data = data
        self.block_size = block_size
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.rank = rank
        self.world_size = world_size
        self.generator = generator
        self.device = torch.device(device)

    @property
    def tokens_per_step(self) -> int:
        """Tokens that one optimiser step trains on, over all ranks."""
        return self.batch_size * self.grad_accum * self.world_size * self.block_size

    def next_step(self) -> list[tuple[Tensor, Tensor]]:
        count = self.grad_accum * self.batch_size * self.world_size
        offsets = draw_offsets(num_windows(self.data, self.block_size), count, self.generator)
        shares = rank_shares(offsets, self.grad_accum, self.batch_size, self.rank, self.world_size)
        return [gather_windows(self.data, mine, self.block_size, self.device) for mine in shares]


def fixed_batches(
    data: np.ndarray | Tensor,
    block_size: int,
    batch_size: int,
    num_batches: int,
    seed: int,
    device: str | torch.device,
) -> list[tuple[Tensor, Tensor]]:
    """The same ``num_batches`` batches every time: evaluations compare like with like.

    A private generator seeded with ``seed`` is used, so evaluating never moves the
    training generator (which would break exact resume).
    """
    generator = torch.Generator().manual_seed(seed)
    n = num_windows(data, block_size)
    return [
        gather_windows(data, draw_offsets(n, batch_size, generator), block_size, device)
        for _ in range(num_batches)
    ]


def sequential_batches(
    data: np.ndarray | Tensor,
    block_size: int,
    batch_size: int,
    device: str | torch.device,
    max_batches: int | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Non-overlapping windows covering the data in order (for a full evaluation pass).

    Yields ``(x, y)`` batches; every token but the first of each window is
    predicted exactly once, so the mean loss is the loss on the whole split.
    ``max_batches`` (``None``: all) must be at least 1: zero batches score nothing.
    """
    if max_batches is not None and (not is_int(max_batches) or max_batches < 1):
        raise SettingError(
            f"max_batches must be a positive integer or unset (all), got {max_batches!r}",
            setting="max_batches",
        )
    return _windows_in_order(data, block_size, batch_size, device, max_batches)


def _windows_in_order(
    data: np.ndarray | Tensor,
    block_size: int,
    batch_size: int,
    device: str | torch.device,
    max_batches: int | None,
) -> Iterator[tuple[Tensor, Tensor]]:
    starts = list(range(0, len(data) - block_size, block_size))
    if max_batches is not None:
        starts = starts[: max_batches * batch_size]
    for i in range(0, len(starts), batch_size):
        offsets = torch.tensor(starts[i : i + batch_size])
        yield gather_windows(data, offsets, block_size, device)


def get_document_batch(
    data: np.ndarray,
    spans: np.ndarray,
    batch_size: int,
    block_size: int,
    *,
    pad_id: int,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Whole documents, one per row, padded: microgpt-style training on short texts.

    Each row is a random document (from ``spans``, see
    :func:`tinylm.data.prepared.document_spans`), cut to ``block_size + 1`` tokens;
    rows are padded to the longest in the batch. Inputs pad with ``pad_id``;
    targets at padded positions are :data:`IGNORE_INDEX`, which cross-entropy
    ignores, so padding never enters the loss.
    """
    if len(spans) == 0:
        raise TinylmError("the data has no documents of two or more tokens to batch")
    picks = draw_offsets(len(spans), batch_size, generator).tolist()
    docs = [np.asarray(data[s : min(e, s + block_size + 1)], np.int64) for s, e in spans[picks]]
    width = max(len(doc) for doc in docs) - 1
    x = torch.full((batch_size, width), pad_id, dtype=torch.int64)
    y = torch.full((batch_size, width), IGNORE_INDEX, dtype=torch.int64)
    for row, doc in enumerate(docs):
        ids = torch.from_numpy(doc)
        x[row, : len(doc) - 1] = ids[:-1]
        y[row, : len(doc) - 1] = ids[1:]
    return to_device(x, y, device)
