"""Measuring a model on held-out text: loss and perplexity.

The loss is the mean cross-entropy of the next token, in nats. Perplexity is
``exp(loss)``: the number of equally likely tokens the model is, on average, as
uncertain as. A model that knows nothing scores ``vocab_size``; a perfect one, 1.

Two ways to measure:

* :func:`estimate_loss`: the mean over a *fixed* set of random batches, the
  same at every evaluation of a run, so that the curve moves only because the
  model changed. Cheap enough to run every few hundred steps.
* :func:`full_pass_loss`: every token of a split once, in order (``tinylm
  eval``), for the number to report.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from tinylm.train.distributed import DistInfo, all_reduce_sum


def perplexity(loss: float) -> float:
    """``exp(loss)``, capped so that a diverged model reports inf rather than overflowing."""
    return math.exp(loss) if loss < 700 else math.inf


@torch.no_grad()
def mean_loss(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    autocast: Callable[[], object] | None = None,
    dist: DistInfo | None = None,
) -> tuple[float, int]:
    """Token-weighted mean loss over ``batches`` and the number of tokens scored.

    With data parallelism each rank scores its own batches (its slice of the
    global ones) and the sums are added up, so all ranks return the same value.
    """
    dist = dist or DistInfo()
    was_training = model.training
    model.eval()
    loss_sum, tokens = 0.0, 0  # Python floats: exact enough, and MPS has no float64
    try:
        for x, y in batches:
            context = autocast() if autocast is not None else contextlib.nullcontext()
            with context:
                _, loss = model(x, y)
            count = int((y != -100).sum())
            loss_sum += float(loss) * count
            tokens += count
    finally:
        model.train(was_training)
    if dist.enabled:
        device = next(model.parameters()).device
        total = torch.tensor([loss_sum, tokens], dtype=torch.float64, device=device)
        loss_sum, tokens = (float(v) for v in all_reduce_sum(total, dist).tolist())
        tokens = int(tokens)
    return (loss_sum / tokens if tokens else math.nan), tokens


def estimate_loss(
    model: nn.Module,
    batches: list[tuple[Tensor, Tensor]],
    autocast: Callable[[], object] | None = None,
    dist: DistInfo | None = None,
) -> dict[str, float]:
    """``{"val_loss", "val_ppl"}`` over a fixed list of batches."""
    loss, _ = mean_loss(model, batches, autocast, dist)
    return {"val_loss": loss, "val_ppl": perplexity(loss)}


def full_pass_loss(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]
) -> dict[str, float | int]:
    """``{"loss", "perplexity", "tokens"}`` over every batch (one process)."""
    loss, tokens = mean_loss(model, batches)
    return {"loss": loss, "perplexity": perplexity(loss), "tokens": tokens}
