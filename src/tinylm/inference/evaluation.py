"""Measuring a model on held-out text: loss and perplexity.

The loss is the mean cross-entropy of the next token, in nats. Perplexity is
``exp(loss)``: the number of equally likely tokens the model is, on average, as
uncertain as. A model that knows nothing scores ``vocab_size``; a perfect one, 1.

Two ways to measure:

* over a *fixed* set of random batches, the same at every evaluation of a run,
  so that the curve moves only because the model changed (the trainer's
  ``estimate_loss``, built on :func:`loss_sum`);
* :func:`evaluate`: every token of a split or a text once, in order (``tinylm
  eval``), for the number to report.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tinylm.data.batches import check_long_enough, sequential_batches
from tinylm.data.corpus import corpus_from_specs, iter_documents
from tinylm.data.prepared import check_tokenizer, is_prepared_dir, load_prepared
from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer

SPLITS = ("val", "train")


def perplexity(loss: float) -> float:
    """``exp(loss)``, capped so that a diverged model reports inf rather than overflowing."""
    return math.exp(loss) if loss < 700 else math.inf


@torch.no_grad()
def loss_sum(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    autocast: Callable[[], object] | None = None,
) -> tuple[float, int]:
    """Summed next-token loss (nats) over ``batches`` and the number of tokens scored.

    Sums rather than a mean, so that parts scored apart (data-parallel ranks,
    batches of different sizes) add up to the exact token-weighted mean.
    Targets of ``-100`` are not scored. The model is in eval mode meanwhile.
    """
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0  # Python floats: exact enough, and MPS has no float64
    try:
        for x, y in batches:
            context = autocast() if autocast is not None else contextlib.nullcontext()
            with context:
                _, loss = model(x, y)
            count = int((y != -100).sum())
            total += float(loss) * count
            tokens += count
    finally:
        model.train(was_training)
    return total, tokens


def mean_loss(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    autocast: Callable[[], object] | None = None,
) -> tuple[float, int]:
    """Token-weighted mean loss over ``batches`` and the number of tokens scored."""
    total, tokens = loss_sum(model, batches, autocast)
    return (total / tokens if tokens else math.nan), tokens


def full_pass_loss(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]
) -> dict[str, float | int]:
    """``{"loss", "perplexity", "tokens"}`` over every batch."""
    loss, tokens = mean_loss(model, batches)
    return {"loss": loss, "perplexity": perplexity(loss), "tokens": tokens}


# -- what to score -------------------------------------------------------------------------


@dataclass
class EvalTokens:
    """Token ids to score, and how to name them in a report."""

    tokens: Any  # a 1-D integer array (a memmap for a prepared split)
    description: str


def eval_tokens(
    tokenizer: Tokenizer,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    split: str = "val",
    separator: str = "eot",
) -> EvalTokens:
    """A prepared folder's ``split``, or text (files, folders, globs, ``pydocs``) encoded now.

    Text is cut into documents by ``separator`` and each is encoded as training
    encodes it (with BOS/EOS), so the loss is comparable with the run's.
    """
    if split not in SPLITS:
        raise TinylmError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    specs = [os.fspath(data)] if isinstance(data, (str, os.PathLike)) else list(map(str, data))
    if len(specs) == 1 and is_prepared_dir(specs[0]):
        prepared = load_prepared(specs[0])
        check_tokenizer(prepared, tokenizer)
        tokens = prepared.val if split == "val" else prepared.train
        return EvalTokens(tokens, f"{specs[0]} ({split})")
    ids: list[int] = []
    for document in iter_documents(corpus_from_specs(specs), separator):
        ids.extend(tokenizer.encode_document(document))
    return EvalTokens(np.asarray(ids, dtype=np.int64), " ".join(specs))


def evaluate(
    model: nn.Module,
    tokenizer: Tokenizer,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    split: str = "val",
    batch_size: int = 16,
    max_batches: int | None = None,
    separator: str = "eot",
) -> dict[str, Any]:
    """Loss and perplexity of ``model`` over every window of ``data``, in order.

    Returns ``{"loss", "perplexity", "tokens", "data"}`` (``data`` describes what was
    scored). ``max_batches`` stops early, for a quick estimate on a large split.
    """
    if batch_size < 1:
        raise TinylmError(f"batch_size must be at least 1, got {batch_size}")
    found = eval_tokens(tokenizer, data, split, separator)
    block_size = model.config.block_size
    check_long_enough(
        found.tokens, block_size, found.description, hint="give more text to evaluate on"
    )
    device = next(model.parameters()).device
    batches = sequential_batches(found.tokens, block_size, batch_size, device, max_batches)
    return {**full_pass_loss(model, batches), "data": found.description}
