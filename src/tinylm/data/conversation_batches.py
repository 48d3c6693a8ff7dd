"""Batches of whole conversations: inputs, targets and the loss mask, padded per batch.

Chat fine-tuning trains on rendered conversations (``tinylm.chat.template``): each
is a list of ids and a mask that is true on the ids the loss counts (the
assistant's replies and their ``<|end|>``). A conversation is one row of a batch,
never cut and never packed with another, so no reply is trained on without the
question before it. For a conversation of ``n`` ids the row is::

    inputs  ids[:-1]      targets ids[1:]      mask  mask[1:]

and a batch pads its rows to the longest one in it (at most ``block_size``, as
``fit_to_context`` kept only conversations that fit): inputs and targets with
id 0, the mask with false, so padding never reaches the loss. Padding sits after
each row's last id and attention is causal, so it cannot change a real
position's logits either.

The rows of one optimiser step are drawn like pretraining windows
(:class:`tinylm.data.batches.StepBatches`): all of the step's row indices in one
call of one ``torch.Generator``, each micro-step and rank taking its own slice.
The generator's state is therefore the data position: a checkpoint that saves it
resumes the very batches an uninterrupted run would draw, and the union of what
the ranks see is what one process with the whole batch sees.

Validation uses :func:`validation_batches`: the held-out conversations in order,
with the targets the mask leaves out set to ``IGNORE_INDEX`` so the ordinary
validation loss (``tinylm.inference.evaluation.loss_sum``) is the masked one.
The held-out conversations come from :func:`split_rows`, a seeded shuffle.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tinylm.data.batches import IGNORE_INDEX, draw_offsets, rank_shares, to_device
from tinylm.errors import TinylmError

#: The share of conversations held out for validation (at least one, and one left to train on).
VAL_FRACTION = 0.1
#: The id padding positions hold (any id works: the mask is false there).
PAD_ID = 0


@dataclass(frozen=True)
class ConversationRows:
    """Rendered conversations, each its ids and its loss mask (one entry per id)."""

    ids: list[list[int]]
    masks: list[list[bool]]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.masks) or any(
            len(i) != len(m) for i, m in zip(self.ids, self.masks, strict=True)
        ):
            raise TinylmError("every conversation needs one mask entry per id")

    def __len__(self) -> int:
        return len(self.ids)

    def all_ids(self) -> np.ndarray:
        """Every id of every row, flat: to check them against the model's vocabulary once."""
        return np.fromiter((i for row in self.ids for i in row), dtype=np.int64)

    def counted_targets(self) -> int:
        """How many targets the loss counts over all rows (``mask[1:]`` of each)."""
        return sum(sum(mask[1:]) for mask in self.masks)

    def subset(self, indices: Sequence[int]) -> ConversationRows:
        return ConversationRows([self.ids[i] for i in indices], [self.masks[i] for i in indices])


def split_rows(
    rows: ConversationRows,
    seed: int,
    val_fraction: float = VAL_FRACTION,
    groups: Sequence[str] | None = None,
) -> tuple[ConversationRows, ConversationRows]:
    """``(train, val)``: a seeded shuffle, then ``val_fraction`` of it held out.

    ``groups`` (one name per row) keeps rows of one group on one side: the
    built-in set asks about each topic up to four ways with the same answer, and a
    reply seen in training would make the held-out loss a memory test. Without
    it every row is its own group. At least one group is held out and at least one
    kept for training, so two are the fewest a fine-tune can use. The same rows,
    groups and seed give the same split (``random.Random(seed)``, not torch's RNG).
    """
    names = list(range(len(rows))) if groups is None else list(groups)
    if len(names) != len(rows):
        raise TinylmError(f"{len(names)} group names for {len(rows)} conversations")
    unique = list(dict.fromkeys(names))  # first-appearance order: no hash-seed dependence
    if len(unique) < 2:
        raise TinylmError(
            f"chat fine-tuning needs at least 2 conversations that fit the context "
            f"(one to train on, one to validate), got {len(unique)}; give more conversations"
        )
    random.Random(seed).shuffle(unique)
    n_val = min(max(1, round(len(unique) * val_fraction)), len(unique) - 1)
    held_out = set(unique[:n_val])
    val = [i for i, name in enumerate(names) if name in held_out]
    train = [i for i, name in enumerate(names) if name not in held_out]
    return rows.subset(train), rows.subset(val)


def pad_rows(rows: ConversationRows) -> tuple[Tensor, Tensor, Tensor]:
    """``(inputs, targets, mask)`` of the rows, padded to the longest (module docstring)."""
    width = max(len(ids) for ids in rows.ids) - 1
    x = torch.full((len(rows), width), PAD_ID, dtype=torch.int64)
    y = torch.full((len(rows), width), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for row, (ids, counted) in enumerate(zip(rows.ids, rows.masks, strict=True)):
        n = len(ids) - 1
        x[row, :n] = torch.tensor(ids[:-1], dtype=torch.int64)
        y[row, :n] = torch.tensor(ids[1:], dtype=torch.int64)
        mask[row, :n] = torch.tensor(counted[1:], dtype=torch.bool)
    return x, y, mask


def masked_to_ignored(y: Tensor, mask: Tensor) -> Tensor:
    """Targets with every position the mask leaves out set to ``IGNORE_INDEX``."""
    return torch.where(mask, y, torch.full_like(y, IGNORE_INDEX))


def _to_device(
    batch: tuple[Tensor, Tensor, Tensor], device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    x, y = to_device(batch[0], batch[1], device)
    return x, y, batch[2].to(device)


class ConversationBatches:
    """The micro-batches of each optimiser step, for one rank: ``(inputs, targets, mask)``.

    The same interface as :class:`tinylm.data.batches.StepBatches`, so the trainer
    drives either; the rows are drawn with replacement, as pretraining windows are.
    """

    def __init__(
        self,
        rows: ConversationRows,
        batch_size: int,
        grad_accum: int = 1,
        *,
        rank: int = 0,
        world_size: int = 1,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> None:
        if len(rows) == 0:
            raise TinylmError("there are no conversations to train on")
        self.rows = rows
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.rank = rank
        self.world_size = world_size
        self.generator = generator
        self.device = torch.device(device)
        self.tokens_per_step = 0  # input positions of the last step drawn, over all ranks

    def next_step(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        count = self.grad_accum * self.batch_size * self.world_size
        picks = draw_offsets(len(self.rows), count, self.generator)
        self.tokens_per_step = sum(len(self.rows.ids[int(i)]) - 1 for i in picks)
        shares = rank_shares(picks, self.grad_accum, self.batch_size, self.rank, self.world_size)
        return [
            _to_device(pad_rows(self.rows.subset([int(i) for i in mine])), self.device)
            for mine in shares
        ]


def validation_batches(
    rows: ConversationRows,
    batch_size: int,
    max_batches: int,
    device: torch.device | str,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> list[tuple[Tensor, Tensor]]:
    """This rank's share of the held-out conversations, in order, as ``(inputs, targets)``.

    Global batches of ``batch_size * world_size`` rows, at most ``max_batches`` of
    them; targets the mask leaves out are ``IGNORE_INDEX``. The same batches every
    time, so evaluations compare like with like.
    """
    size = batch_size * world_size
    batches = []
    for start in range(0, min(len(rows), size * max_batches), size):
        begin = start + rank * batch_size
        mine = list(range(begin, min(begin + batch_size, start + size, len(rows))))
        if mine:
            x, y, mask = pad_rows(rows.subset(mine))
            batches.append(to_device(x, masked_to_ignored(y, mask), device))
    return batches


@dataclass(frozen=True)
class ConversationData:
    """A chat fine-tune's data: training and held-out conversations, and their template.

    ``chat_template`` is the record (:func:`tinylm.chat.template.template_record`)
    every checkpoint of the run stores, so the model is used as it was trained.
    """

    train: ConversationRows
    val: ConversationRows
    chat_template: dict[str, Any]
