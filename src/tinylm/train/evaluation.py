"""Validation during training: the loss on fixed batches, summed across processes.

The measuring itself is :mod:`tinylm.inference.evaluation`'s; what training adds
is data parallelism. Each rank scores its own slice of the fixed global batches,
and the sums are added up, so every rank reports the same value.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from tinylm.inference.evaluation import loss_sum, perplexity
from tinylm.train.distributed import DistInfo, all_reduce_sum


def estimate_loss(
    model: nn.Module,
    batches: list[tuple[Tensor, Tensor]],
    autocast: Callable[[], object] | None = None,
    dist: DistInfo | None = None,
) -> dict[str, float]:
    """``{"val_loss", "val_ppl"}`` over a fixed list of batches (all ranks together)."""
    dist = dist or DistInfo()
    total, tokens = loss_sum(model, batches, autocast)
    if dist.enabled:
        device = next(model.parameters()).device
        sums = torch.tensor([total, tokens], dtype=torch.float64, device=device)
        total, tokens = (float(v) for v in all_reduce_sum(sums, dist).tolist())
    loss = total / tokens if tokens else math.nan
    return {"val_loss": loss, "val_ppl": perplexity(loss)}
